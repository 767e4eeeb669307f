//! Developer tools: the IdP emulator, the echo upstream, the demo and the load
//! generator. Production code never imports this module; only `main.rs` and
//! the tools themselves do.

pub mod app_page;
pub mod demo;
pub mod echo;
pub mod emulator;
pub mod loadtest;
