//! The shared test kit: one place for what tests, benchmarks and the bench and soak tools need
//! around the exporter, so none of them grows a private copy.
//!
//! - [`exporter`] starts the real binary on nvml-sim; [`process`] owns any child process.
//! - [`http`] is the one keep-alive HTTP/1.1 client and load generator.
//! - [`procfs`] reads resident memory and CPU time; [`stats`] gives percentiles and medians.
//! - [`builders`] makes samples, engines and snapshots.
//! - [`wait`] is the one "wait until" (a timeout names what was awaited and the last thing seen).
//! - [`sim`] is nvml-sim's own harness: a private library copy per test and raw FFI calls.

pub mod builders;
pub mod exporter;
pub mod http;
pub mod process;
pub mod procfs;
pub mod sim;
pub mod stats;
pub mod wait;
