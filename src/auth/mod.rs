//! Authentication: where a session credential comes from, the identity a
//! provider reports for it, what the upstream is told (headers, and the
//! signed identity token), and the cache that remembers the answer.

pub mod cache;
pub mod credential;
pub mod headers;
pub mod identity;
pub mod jwt;
