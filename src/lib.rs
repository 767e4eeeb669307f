//! sessiongate: a reverse proxy that validates a session credential against
//! an identity provider's session API, caches the answer until the session
//! expires, injects the user's identity as request headers and forwards the
//! request upstream. Apps behind it never see an unauthenticated request on a
//! protected route.
//!
//! # Request flow (see [`pipeline`])
//! [`pipeline::Gateway::decide`]: head checks -> normalize path -> logout? ->
//! route (longest prefix) -> declared body size -> public: allow | required:
//! credential -> cache, else IdP (coalesced) -> permissions/roles.
//! Then the rewrite for the upstream: strip client identity headers -> strip
//! hop-by-hop -> inject identity headers -> X-Forwarded-* -> normalized path;
//! and [`proxy`] forwards, streaming (bodies cut off at the route's limit).
//!
//! # Layout
//! - `main.rs`, [`cli`], [`telemetry`]: the thin binary; [`app`]: production
//!   wiring from config to serving listeners.
//! - [`pipeline`]: the request path, read top to bottom: decide, then forward.
//! - [`forward_auth`]: the decision listener for ingresses (nginx
//!   `auth_request`, Traefik, Caddy, Envoy): the pipeline's decide step,
//!   answered as a status and identity headers instead of forwarded.
//! - [`error`]: every failure and its HTTP response, in one table; [`html`]: the
//!   same for browsers (`Accept: text/html`), as small error pages.
//! - [`path`] (a leaf): path normalization; [`routes`]: the route table;
//!   [`request_id`]: `x-request-id` kept or generated.
//! - [`config`]: the serde mirror of the file (`raw`), validated per section
//!   into the runtime types the rest of the crate sees.
//! - [`auth`]: where a credential comes from, the provider-neutral identity,
//!   the header plan (what the upstream is told), the signed identity token
//!   (`jwt`), the freshness-aware cache.
//! - [`idp`]: the [`idp::SessionProvider`] trait, [`idp::build`], one
//!   folder per provider with the wire types its emulator shares, and
//!   [`idp::guard`]: the concurrency limit and circuit breaker around them.
//! - [`cluster`]: shared state across replicas on Redis (`[cluster]`): the
//!   sealed L2 cache with its lock, and revocations on a Redis Stream.
//! - [`proxy`]: forwarding (upstream connections owned by the client
//!   connection, or the shared pool), hop-by-hop, X-Forwarded-*, bodies,
//!   upgrades; [`connector`]: outbound TCP/TLS for upstreams and the IdP.
//! - [`server`]: accept loop, protocols, idle timers, per-connection scope,
//!   TLS and PEM loading; it knows nothing of the config or the core.
//! - [`admin`]: health, readiness latch, `POST /revoke`, metrics.
//! - [`dev`]: emulator, echo upstream, demo, load generator; only `main.rs`
//!   and `dev` itself import it.
//!
//! Dependency rules (checked by `tests/architecture.rs`): no import circles;
//! `config` imports only `path` and `server::pem`; `server` imports nothing
//! outside itself; only `main.rs` and `dev` import `dev`; `idp` imports
//! neither `pipeline` nor `proxy`; `proxy` imports neither `pipeline` nor `idp`;
//! `cluster` imports neither `pipeline`, `proxy` nor `admin`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod dev;
pub mod error;
pub mod forward_auth;
pub mod hex;
pub mod html;
pub mod idp;
pub mod path;
pub mod pipeline;
pub mod proxy;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod telemetry;
