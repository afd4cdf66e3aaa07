//! What every stage stands on: configuration input checks (`input`, `files`), the build's identity,
//! logging, the one writer of the Prometheus text format (`encoder`), the operations whose failures
//! are counted, and the infrastructure every task runs under (`supervise`, the `telemetry`
//! registry). It imports no other stage.

pub mod build_info;
pub(crate) mod encoder;
pub(crate) mod files;
pub mod input;
pub mod logging;
pub mod operation;
pub(crate) mod supervise;
pub mod telemetry;
