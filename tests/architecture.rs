//! The dependency rules of `src/`, checked on every `crate::` path (in `use`
//! lines and inline), every `super::` path resolved to its absolute module,
//! and, in `src/main.rs`, every `sessiongate::` path. Comments, strings and
//! character literals are skipped, so only code counts.
//!
//! Rules (a node is a top-level module, except the leaf `server::pem`):
//! - no import cycles between nodes;
//! - `config` imports only `path` and `server::pem`;
//! - `server` imports nothing outside `server` (neither `config` nor the core);
//! - only `main.rs` and `dev` import `dev`;
//! - `idp` imports neither `pipeline` nor `proxy`;
//! - `proxy` imports neither `pipeline` nor `idp`;
//! - `cluster` imports neither `pipeline`, `proxy` nor `admin` (its metrics go
//!   through an observer, like the IdP guard's);
//! - the leaves `path` and `server::pem` import nothing else from the crate.
//!
//! The checker is plain functions over [`Edge`]s; the tests at the bottom feed
//! it synthetic violations, so a green run means the rules were checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

/// Module path of `src/main.rs`, which is a crate of its own.
const MAIN: &str = "main";
/// Module path of `src/lib.rs`, the library's root.
const ROOT: &str = "lib";

/// One reference from code in module `from` to the crate path `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    /// Absolute module of the referring code (`proxy::hop`, `main`).
    from: String,
    /// Referenced path without `crate::` (`server::ConnectionInfo`).
    to: String,
    /// Where: `src/proxy/hop.rs:9`.
    at: String,
}

/// A broken rule, with every site that breaks it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    /// Which rule (a stable phrase, matched by the tests).
    rule: &'static str,
    /// What breaks it: the edge, or the cycle `a -> b -> a`.
    what: String,
    /// `file:line` of each offending reference.
    sites: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.rule, self.what)?;
        for site in &self.sites {
            writeln!(f, "    at {site}")?;
        }
        Ok(())
    }
}

const RULE_CYCLE: &str = "no import cycles between top-level modules";
const RULE_CONFIG: &str = "config imports only path and server::pem";
const RULE_SERVER: &str = "server imports nothing outside server (no config, no core)";
const RULE_DEV: &str = "only main.rs and dev import dev";
const RULE_IDP: &str = "idp imports neither pipeline nor proxy";
const RULE_PROXY: &str = "proxy imports neither pipeline nor idp";
const RULE_CLUSTER: &str = "cluster imports neither pipeline, proxy nor admin";
const RULE_LEAF: &str = "leaves (path, server::pem) import nothing else from the crate";

/// The node a module path belongs to: its top-level module, except that
/// `server::pem` stands alone (config may use it without using `server`).
fn node(path: &str) -> &str {
    if path == "server::pem" || path.starts_with("server::pem::") {
        return "server::pem";
    }
    path.split("::").next().unwrap_or(path)
}

/// First segment of a module path.
fn top(path: &str) -> &str {
    path.split("::").next().unwrap_or(path)
}

/// Every rule (but the cycle rule) that the edge `from -> to` breaks.
fn broken_rules(from: &str, to: &str) -> Vec<&'static str> {
    let (from_node, to_node) = (node(from), node(to));
    let (from_top, to_top) = (top(from), top(to));
    let mut broken = Vec::new();
    if from_node == to_node {
        return broken;
    }
    if from_top == "config" && !matches!(to_node, "path" | "server::pem") {
        broken.push(RULE_CONFIG);
    }
    if from_top == "server" && to_top != "server" {
        broken.push(RULE_SERVER);
    }
    if to_top == "dev" && !matches!(from_top, "dev" | MAIN) {
        broken.push(RULE_DEV);
    }
    if from_top == "idp" && matches!(to_top, "pipeline" | "proxy") {
        broken.push(RULE_IDP);
    }
    if from_top == "proxy" && matches!(to_top, "pipeline" | "idp") {
        broken.push(RULE_PROXY);
    }
    if from_top == "cluster" && matches!(to_top, "pipeline" | "proxy" | "admin") {
        broken.push(RULE_CLUSTER);
    }
    if matches!(from_node, "path" | "server::pem") {
        broken.push(RULE_LEAF);
    }
    broken
}

/// Checks every rule over `edges`: one violation per broken rule and
/// (module, node it imports), listing each site and path; one per cycle.
fn check(edges: &[Edge]) -> Vec<Violation> {
    let mut by_rule: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
    for e in edges {
        for rule in broken_rules(&e.from, &e.to) {
            by_rule
                .entry((rule, format!("{} -> {}", e.from, node(&e.to))))
                .or_default()
                .push(format!("{}: {}", e.at, e.to));
        }
    }
    let mut out: Vec<Violation> = by_rule
        .into_iter()
        .map(|((rule, what), sites)| Violation { rule, what, sites })
        .collect();
    out.extend(cycles(edges));
    out
}

/// One cycle per group of mutually importing nodes (strongly connected
/// component), the shortest through its first node, with the sites of each
/// of its edges.
fn cycles(edges: &[Edge]) -> Vec<Violation> {
    // node -> node -> sites
    let mut graph: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    for e in edges {
        let (a, b) = (node(&e.from), node(&e.to));
        if a == b || a == MAIN {
            continue;
        }
        graph
            .entry(a)
            .or_default()
            .entry(b)
            .or_default()
            .push(&e.at);
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    for &start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        let forward = reachable(&graph, start);
        let component: BTreeSet<&str> = forward
            .iter()
            .copied()
            .filter(|&n| reachable(&graph, n).contains(start))
            .collect();
        seen.extend(component.iter().copied());
        if component.len() < 2 {
            continue;
        }
        let Some(cycle) = shortest_cycle(&graph, start) else {
            continue;
        };
        let mut sites = Vec::new();
        for pair in cycle.windows(2) {
            let mut at: Vec<&str> = graph[pair[0]][pair[1]].clone();
            at.dedup();
            sites.extend(
                at.iter()
                    .map(|at| format!("{} -> {}: {at}", pair[0], pair[1])),
            );
        }
        out.push(Violation {
            rule: RULE_CYCLE,
            what: cycle.join(" -> "),
            sites,
        });
    }
    out
}

/// Every node reachable from `start` (itself included).
fn reachable<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, Vec<&str>>>,
    start: &'a str,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([start]);
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &next in graph.get(n).map(|m| m.keys()).into_iter().flatten() {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}

/// `start -> ... -> start`, shortest, if there is one.
fn shortest_cycle<'a>(
    graph: &BTreeMap<&'a str, BTreeMap<&'a str, Vec<&str>>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &next in graph.get(n).map(|m| m.keys()).into_iter().flatten() {
            if next == start {
                // Walk back from `n` to `start`, then read it forwards.
                let mut path = vec![n];
                let mut at = n;
                while let Some(&p) = parent.get(at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                path.push(start);
                return Some(path);
            }
            if !parent.contains_key(next) {
                parent.insert(next, n);
                queue.push_back(next);
            }
        }
    }
    None
}

// --- reading the source ---

/// A token of code; comments, strings and character literals never become one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Semi,
    Other,
}

/// Tokens of `src` with their 1-based line numbers.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    // Skips to just past the end of a string body starting at `i`; counts lines.
    let skip_string = |mut i: usize, hashes: Option<usize>, line: &mut usize| -> usize {
        loop {
            match c.get(i) {
                None => return i,
                Some('\n') => *line += 1,
                Some('\\') if hashes.is_none() => {
                    if c.get(i + 1) == Some(&'\n') {
                        *line += 1;
                    }
                    i += 1;
                }
                Some('"') => match hashes {
                    None => return i + 1,
                    Some(n) if (1..=n).all(|k| c.get(i + k) == Some(&'#')) => return i + 1 + n,
                    Some(_) => {}
                },
                _ => {}
            }
            i += 1;
        }
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            '\n' => {
                line += 1;
                i += 1;
            }
            _ if ch.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                let mut depth = 0;
                loop {
                    match (at(i), at(i + 1)) {
                        ('\0', _) => break,
                        ('/', '*') => {
                            depth += 1;
                            i += 2;
                        }
                        ('*', '/') => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        ('\n', _) => {
                            line += 1;
                            i += 1;
                        }
                        _ => i += 1,
                    }
                }
            }
            '"' => i = skip_string(i + 1, None, &mut line),
            '\'' => {
                if at(i + 1) == '\\' {
                    // Escaped character literal: up to the closing quote.
                    i += 2;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == '\'' {
                    i += 3;
                } else {
                    // A lifetime or label: the quote alone; its name is an ident.
                    i += 1;
                }
            }
            ':' if at(i + 1) == ':' => {
                out.push((Tok::PathSep, line));
                i += 2;
            }
            '{' => {
                out.push((Tok::Open, line));
                i += 1;
            }
            '}' => {
                out.push((Tok::Close, line));
                i += 1;
            }
            ',' => {
                out.push((Tok::Comma, line));
                i += 1;
            }
            '*' => {
                out.push((Tok::Star, line));
                i += 1;
            }
            ';' => {
                out.push((Tok::Semi, line));
                i += 1;
            }
            _ if ch.is_alphanumeric() || ch == '_' => {
                // Raw and byte strings: r"..", r#".."#, b"..", br#".."#.
                let prefix_len = match (ch, at(i + 1)) {
                    ('b', 'r') => 2,
                    ('r', _) | ('b', _) => 1,
                    _ => 0,
                };
                if prefix_len > 0 {
                    let mut j = i + prefix_len;
                    let mut hashes = 0;
                    while at(j) == '#' {
                        hashes += 1;
                        j += 1;
                    }
                    let raw = ch == 'r' || prefix_len == 2;
                    if at(j) == '"' && (raw || hashes == 0) {
                        i = skip_string(j + 1, raw.then_some(hashes), &mut line);
                        continue;
                    }
                    if ch == 'b' && hashes == 0 && at(j) == '\'' {
                        // A byte literal: b'x' or b'\n'.
                        i = j + 1;
                        while i < c.len() && c[i] != '\'' {
                            i += if c[i] == '\\' { 2 } else { 1 };
                        }
                        i += 1;
                        continue;
                    }
                    if ch == 'r' && hashes == 1 {
                        // A raw identifier, r#name: the name is the ident.
                        i = j;
                        continue;
                    }
                }
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(c[start..i].iter().collect()), line));
            }
            _ => {
                out.push((Tok::Other, line));
                i += 1;
            }
        }
    }
    out
}

/// Every crate path referenced in `src`, which is the file of module
/// `module` (`["proxy", "hop"]`; empty for lib.rs), as (referring module,
/// absolute path, line). In main.rs (`is_main`), `sessiongate::` paths are
/// the library's and `crate::` ones the binary's own (not collected).
fn references(src: &str, module: &[String], is_main: bool) -> Vec<(String, String, usize)> {
    let toks = tokenize(src);
    let mut out = Vec::new();
    // Inline `mod name { .. }` blocks: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let here = |inline: &[(String, usize)]| -> Vec<String> {
        module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect()
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Open => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
            }
            Tok::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Semi => pending_mod = None,
            Tok::Ident(kw) if kw == "mod" => {
                if let Some((Tok::Ident(name), _)) = toks.get(i + 1) {
                    pending_mod = Some(name.clone());
                    i += 1;
                }
            }
            Tok::Ident(root) if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep) => {
                let after_sep = i > 0 && toks[i - 1].0 == Tok::PathSep;
                let base: Option<Vec<String>> = match root.as_str() {
                    _ if after_sep => None,
                    "crate" if !is_main => Some(Vec::new()),
                    "sessiongate" if is_main => Some(Vec::new()),
                    "super" if !is_main => {
                        let mut m = here(&inline);
                        m.pop();
                        Some(m)
                    }
                    "self" if !is_main => Some(here(&inline)),
                    _ => None,
                };
                if let Some(base) = base {
                    let from = if is_main {
                        MAIN.to_string()
                    } else if module.is_empty() && inline.is_empty() {
                        ROOT.to_string()
                    } else {
                        here(&inline).join("::")
                    };
                    let mut paths = Vec::new();
                    i = parse_tail(&toks, i + 1, base, &mut paths);
                    for (path, line) in paths {
                        if !path.is_empty() {
                            out.push((from.clone(), path.join("::"), line));
                        }
                    }
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Parses `::seg::seg`, `::{a, b::c, self}` or `::*` starting at the `::`
/// at `i`, pushing each complete path; returns the index after it.
fn parse_tail(
    toks: &[(Tok, usize)],
    mut i: usize,
    mut path: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut line = toks[i].1;
    while toks.get(i).map(|t| &t.0) == Some(&Tok::PathSep) {
        match toks.get(i + 1) {
            Some((Tok::Ident(s), l)) => {
                if s == "super" {
                    path.pop();
                } else {
                    path.push(s.clone());
                }
                line = *l;
                i += 2;
            }
            Some((Tok::Star, _)) => {
                i += 2;
                break;
            }
            Some((Tok::Open, _)) => {
                i += 2;
                return parse_group(toks, i, &path, out);
            }
            _ => {
                // `::<T>` turbofish: the path so far is the reference.
                break;
            }
        }
    }
    out.push((path, line));
    i
}

/// Parses the items of a `{ .. }` group after its `{` at `i`; returns the
/// index after the `}`.
fn parse_group(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    while let Some((tok, line)) = toks.get(i) {
        match tok {
            Tok::Close => return i + 1,
            Tok::Comma => i += 1,
            Tok::Star => {
                out.push((prefix.to_vec(), *line));
                i += 1;
            }
            Tok::Ident(s) if s == "self" => {
                out.push((prefix.to_vec(), *line));
                i += 1;
            }
            Tok::Ident(s) if s == "as" => i += 2,
            Tok::Ident(s) => {
                let mut path = prefix.to_vec();
                path.push(s.clone());
                if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::PathSep) {
                    i = parse_tail(toks, i + 1, path, out);
                } else {
                    out.push((path, *line));
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// Module path of a file under `src/`: `proxy/hop.rs` -> `proxy::hop`,
/// `proxy/mod.rs` -> `proxy`, `lib.rs` -> root (empty).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && !(parts.is_empty() && stem == "lib") {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every edge of the real `src/` tree.
fn source_edges() -> Vec<Edge> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let is_main = rel == Path::new("main.rs");
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.strip_prefix(root).unwrap().display().to_string();
        for (from, to, line) in references(&text, &module_of(rel), is_main) {
            edges.push(Edge {
                from,
                to,
                at: format!("{shown}:{line}"),
            });
        }
    }
    edges
}

#[test]
fn src_keeps_the_dependency_rules() {
    let edges = source_edges();
    // A reader that found nothing would pass every rule.
    assert!(
        edges
            .iter()
            .any(|e| e.from == "pipeline" && node(&e.to) == "proxy"),
        "the reader missed pipeline's use of proxy; it is broken"
    );
    let violations = check(&edges);
    let report: String = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{} dependency rule violation(s):\n{report}",
        violations.len()
    );
}

// --- the checker can fail ---

fn edge(from: &str, to: &str) -> Edge {
    Edge {
        from: from.into(),
        to: to.into(),
        at: format!("src/{}.rs:1", from.replace("::", "/")),
    }
}

/// The rules `check` reports for one edge.
fn rules_for(from: &str, to: &str) -> Vec<&'static str> {
    check(&[edge(from, to)]).iter().map(|v| v.rule).collect()
}

#[test]
fn each_rule_reports_a_violating_edge_with_its_site() {
    for (from, to, rule) in [
        ("config", "server::DEFAULT_IDLE_TIMEOUT", RULE_CONFIG),
        ("config::validate", "routes::RouteTable", RULE_CONFIG),
        ("server", "config::Config", RULE_SERVER),
        ("server::tls", "pipeline::Gateway", RULE_SERVER),
        ("pipeline", "dev::emulator::Emulator", RULE_DEV),
        ("idp::iid", "pipeline::Gateway", RULE_IDP),
        ("idp", "proxy::Forwarder", RULE_IDP),
        ("proxy::hop", "pipeline::Outcome", RULE_PROXY),
        ("proxy", "idp::IdpError", RULE_PROXY),
        ("cluster", "pipeline::Gateway", RULE_CLUSTER),
        ("cluster::revocations", "admin::Metrics", RULE_CLUSTER),
        ("path", "routes::Route", RULE_LEAF),
        ("server::pem", "server::tls::ALPN_H2", RULE_LEAF),
    ] {
        let violations = check(&[edge(from, to)]);
        assert!(
            violations.iter().any(|v| v.rule == rule
                && v.what == format!("{from} -> {}", node(to))
                && v.sites == [format!("{}: {to}", edge(from, to).at)]),
            "{from} -> {to} should break {rule:?}: {violations:?}"
        );
    }
}

#[test]
fn allowed_edges_pass() {
    for (from, to) in [
        ("config", "path::normalize_path"),
        ("config", "server::pem::read_certs"),
        ("config::raw", "config::Config"),
        ("server::tls", "server::pem::certified_key"),
        ("pipeline", "server::ConnectionInfo"),
        ("dev::demo", "app::build_gateway"),
        ("dev::emulator::state", "dev::emulator::users::User"),
        (MAIN, "dev::demo"),
        ("proxy", "config::Upstream"),
        ("idp::iid", "config::IdpConfig"),
        ("cluster", "auth::cache::SessionCache"),
        ("pipeline", "cluster::Cluster"),
    ] {
        assert_eq!(rules_for(from, to), Vec::<&str>::new(), "{from} -> {to}");
    }
}

#[test]
fn a_cycle_is_reported_as_a_path_with_its_sites() {
    let edges = [
        edge("auth::cache", "idp::Verdict"),
        edge("idp::iid", "error::GatewayError"),
        edge("error", "auth::identity::Identity"),
        edge("pipeline", "auth"),
    ];
    let v = check(&edges);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].rule, RULE_CYCLE);
    assert_eq!(v[0].what, "auth -> idp -> error -> auth");
    assert_eq!(
        v[0].sites,
        [
            "auth -> idp: src/auth/cache.rs:1",
            "idp -> error: src/idp/iid.rs:1",
            "error -> auth: src/error.rs:1",
        ]
    );
    // Two modules importing each other is the smallest cycle.
    let v = check(&[
        edge("routes", "admin::Admin"),
        edge("admin", "routes::Route"),
    ]);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].what, "admin -> routes -> admin");
    // server::pem is its own node: config -> pem and server -> pem make no cycle.
    assert!(check(&[
        edge("config", "server::pem::read_key"),
        edge("server::tls", "server::pem::parse_key"),
    ])
    .is_empty());
}

#[test]
fn files_map_to_modules() {
    let m = |p: &str| module_of(Path::new(p)).join("::");
    assert_eq!(m("proxy/hop.rs"), "proxy::hop");
    assert_eq!(m("proxy/mod.rs"), "proxy");
    assert_eq!(m("dev/emulator/mod.rs"), "dev::emulator");
    assert_eq!(m("path.rs"), "path");
    assert_eq!(m("lib.rs"), "");
}

#[test]
fn the_reader_finds_every_kind_of_reference_and_skips_comments_and_strings() {
    let src = r##"
//! crate::dev::in_a_doc_comment
use crate::server::tls::{self, TlsAcceptorHandle as Tls};
use crate::{
    admin,
    auth::{cache::Cache, identity::*},
};
use super::Onward;
/// crate::dev::in_docs
fn f() {
    let _ = crate::server::pem::read_certs(p); // crate::dev::trailing
    /* crate::dev::block /* nested */ still comment */
    let s = "crate::dev::in_a_string";
    let r = r#"crate::dev::in_a_raw_string "quoted" "#;
    let c = '"'; let b = b'\''; let l: &'static str = "";
    let _ = crate::error::GatewayError::BodyTooLarge;
    let _ = Vec::<u8>::new();
    let _ = crate::routes::lookup::<u8>(x);
}
#[cfg(test)]
mod tests {
    use super::*;
    use super::super::idp::Verdict;
}
"##;
    let got: Vec<(String, String, usize)> = references(src, &["proxy".into(), "hop".into()], false);
    let want = [
        ("proxy::hop", "server::tls", 3),
        ("proxy::hop", "server::tls::TlsAcceptorHandle", 3),
        ("proxy::hop", "admin", 5),
        ("proxy::hop", "auth::cache::Cache", 6),
        ("proxy::hop", "auth::identity", 6),
        ("proxy::hop", "proxy::Onward", 8),
        ("proxy::hop", "server::pem::read_certs", 11),
        ("proxy::hop", "error::GatewayError::BodyTooLarge", 16),
        ("proxy::hop", "routes::lookup", 18),
        ("proxy::hop::tests", "proxy::hop", 22),
        ("proxy::hop::tests", "proxy::idp::Verdict", 23),
    ];
    let want: Vec<(String, String, usize)> = want
        .iter()
        .map(|(f, t, l)| (f.to_string(), t.to_string(), *l))
        .collect();
    assert_eq!(got, want);

    let main = "use sessiongate::{app, dev::demo};\nmod cli_local;\nuse crate::cli_local::X;\n";
    let got = references(main, &[], true);
    assert_eq!(
        got,
        [
            (MAIN.to_string(), "app".to_string(), 1),
            (MAIN.to_string(), "dev::demo".to_string(), 1),
        ]
    );
}
