//! The running process: the `poller` thread that drives sources → model → publication, HTTP
//! (`http` routes, `serve` connections, `web` TLS and auth) and signals (`hangup`).

pub(crate) mod hangup;
pub(crate) mod http;
pub(crate) mod poller;
pub(crate) mod serve;
pub mod web;
