//! The running process: the `poller` thread that drives sources → model → publication, HTTP
//! (`http` routes, `serve` connections, `web` TLS and auth), signals (`hangup`), and the
//! infrastructure every task runs under (`supervise`, the `telemetry` registry).

pub(crate) mod hangup;
pub(crate) mod http;
pub(crate) mod poller;
pub(crate) mod serve;
pub(crate) mod supervise;
pub mod telemetry;
pub mod web;
