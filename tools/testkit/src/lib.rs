//! The shared test kit: one place for what tests, benchmarks and the bench and soak tools need
//! around the exporter, so none of them grows a private copy.

pub mod builders;
