//! Route table: longest-prefix match on the *normalized* path (see
//! [`crate::path`]), so the upstream sees exactly the path the access
//! decision was made on.

use std::sync::Arc;

use crate::config::{Auth, RouteConfig, Upstream};
use crate::path::canonical_prefix;

/// What a route demands of the session.
#[derive(Debug, Clone)]
pub enum Access {
    /// Forwarded without a session.
    Public,
    /// A valid session with all `permissions` and one of `roles` (if any).
    Required {
        /// All must be granted.
        permissions: Box<[Box<str>]>,
        /// One must be granted when non-empty.
        roles: Box<[Box<str>]>,
        /// How long past expiry the last valid answer admits the session
        /// while the IdP fails; zero fails closed.
        stale_if_error: std::time::Duration,
    },
}

/// A configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Matched prefix.
    pub prefix: Box<str>,
    /// Where to forward; `None` on a route that serves forward-auth decisions only.
    pub upstream: Option<Arc<Upstream>>,
    /// Access rule.
    pub access: Access,
    /// Which pooled upstream client carries this route's requests (see [`crate::proxy::Forwarder`]).
    pub client: usize,
    /// Request bodies above this many bytes get 413; `None` is unlimited.
    pub max_body_bytes: Option<u64>,
    /// Its position in the table, which [`RouteTable::prefixes`] keeps: per-route
    /// state (metric series) is found by index, not by hashing the prefix.
    pub index: usize,
}

/// Routes sorted so the first match is the longest prefix.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Box<[Route]>,
}

impl RouteTable {
    /// Builds the table from validated config.
    pub fn new(configs: &[RouteConfig]) -> Self {
        let mut routes: Vec<Route> = configs
            .iter()
            .map(|r| Route {
                prefix: canonical_prefix(&r.prefix).into(),
                upstream: r.upstream.clone().map(Arc::new),
                client: r.client,
                max_body_bytes: r.max_body_bytes,
                index: 0,
                access: match r.auth {
                    Auth::Public => Access::Public,
                    Auth::Required => Access::Required {
                        permissions: r.permissions.iter().map(|p| p.as_str().into()).collect(),
                        roles: r.roles.iter().map(|p| p.as_str().into()).collect(),
                        stale_if_error: r.stale_if_error,
                    },
                },
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        for (index, route) in routes.iter_mut().enumerate() {
            route.index = index;
        }
        Self {
            routes: routes.into(),
        }
    }

    /// The canonical prefixes, longest first, each at its route's `index` (metric labels).
    pub fn prefixes(&self) -> Vec<&str> {
        self.routes.iter().map(|r| &*r.prefix).collect()
    }

    /// The longest route whose prefix matches `path` on a segment boundary:
    /// `/api` (or `/api/`) matches `/api`, `/api/` and `/api/x`, never `/apix`.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| prefix_matches(&r.prefix, path))
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let toml = r#"
            [[routes]]
            prefix = "/public/"
            upstream = "http://127.0.0.1:1"
            auth = "public"
            [[routes]]
            prefix = "/api"
            upstream = "http://127.0.0.1:2"
            [[routes]]
            prefix = "/"
            upstream = "http://127.0.0.1:3"
        "#;
        RouteTable::new(&crate::config::Config::from_toml_str(toml).unwrap().routes)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = table();
        assert_eq!(&*t.find("/public/x").unwrap().prefix, "/public");
        assert_eq!(&*t.find("/public/").unwrap().prefix, "/public");
        // The bare path belongs to the route too, not to the catch-all.
        assert_eq!(&*t.find("/public").unwrap().prefix, "/public");
        assert_eq!(&*t.find("/publicx").unwrap().prefix, "/");
        assert_eq!(&*t.find("/api").unwrap().prefix, "/api");
        assert_eq!(&*t.find("/api/v1").unwrap().prefix, "/api");
        assert_eq!(&*t.find("/apix").unwrap().prefix, "/");
        assert_eq!(&*t.find("/").unwrap().prefix, "/");
    }

    #[test]
    fn each_route_is_at_its_index_among_the_prefixes() {
        let t = table();
        let prefixes = t.prefixes();
        for path in ["/public/x", "/api/v1", "/other"] {
            let route = t.find(path).unwrap();
            assert_eq!(prefixes[route.index], &*route.prefix, "{path}");
        }
    }
}
