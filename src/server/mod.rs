//! The running process: the `poller` thread that drives sources → model → publication, HTTP
//! (`http` routes, `serve` connections, `web` TLS and auth), signals (`hangup`), and the
//! infrastructure every task runs under (`supervise`, the `telemetry` registry).

pub mod hangup;
pub mod http;
pub mod poller;
pub mod serve;
pub mod supervise;
pub mod telemetry;
pub mod web;
