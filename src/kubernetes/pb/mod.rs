//! The pod-resources API's messages and client, generated from the vendored
//! proto/podresources/v1/api.proto by scripts/gen-protos.sh (committed: no proto compiler is
//! needed to build the exporter).

#[allow(clippy::all, clippy::pedantic)]
pub mod v1;
