//! sessiongate: a reverse proxy that validates a session cookie against an
//! identity provider's session API, caches the answer until the session
//! expires, injects the user's identity as request headers and forwards the
//! request upstream. Apps behind it never see an unauthenticated request on a
//! protected route.
//!
//! # Request flow (see [`pipeline`])
//! strip client `x-iid-*` headers -> strip hop-by-hop -> normalize path ->
//! logout? -> route (longest prefix) -> declared body size -> public: forward
//! | required: cookie -> cache, else IdP (coalesced) -> permissions/roles ->
//! inject identity headers -> X-Forwarded-* -> forward, streaming (bodies
//! cut off at the route's limit).
//!
//! # Layout
//! - [`cli`], `main.rs`: command line; the binary is thin.
//! - [`config`]: TOML + env mirror, validated into runtime types.
//! - [`app`]: wiring from config to a serving gateway.
//! - [`server`]: accept loop shared by gateway, emulator and echo upstream (HTTP/1.1, HTTP/2, h2c),
//!   `max_connections`, and the drain; `idle`: its idle and request-head timers.
//! - [`tls`]: TLS termination for the public listener, certificate rotation.
//! - [`pipeline`]: the request pipeline, in order, in one place.
//! - [`error`]: every failure and its HTTP response, in one table.
//! - [`html`]: what browsers get instead (`Accept`, `Accept-Language`): error pages.
//! - [`session`]: cookies -> [`session::SessionKey`] (redacted).
//! - [`cache`]: moka cache with per-entry TTL and coalesced misses.
//! - [`idp`]: the [`idp::SessionProvider`] trait; [`idp::iid`] client and [`idp::wire`] types.
//! - [`identity`]: normalized identity and the headers rendered from it.
//! - [`routes`]: path normalization and the route table.
//! - [`proxy`]: upstream clients (per route CA and HTTP/2), hop-by-hop, X-Forwarded-*.
//! - [`upgrade`]: WebSocket and other upgrades, spliced after the upstream's `101`.
//! - [`request_id`]: `x-request-id` kept or generated, forwarded and returned.
//! - [`connector`]: outbound TCP/TLS (webpki roots or a route's `ca_file`, ALPN).
//! - [`emulator`]: IID-compatible session server; [`echo`]: demo/test upstream.
//! - [`demo`]: the one-command demo; [`loadtest`]: the load generator; [`telemetry`]: logging.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connector;
pub mod dev;
pub mod error;
pub mod html;
pub mod idp;
pub mod path;
pub mod pipeline;
pub mod proxy;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod telemetry;
