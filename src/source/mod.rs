//! Sources: where the data comes from. NVML through `nvml` into a `sample`, `/proc` through
//! `procfs`, and the two annotators the poller joins with each sample: `kubernetes` (workloads) and
//! `clients` (allocator reports). Nothing here imports the model, the outputs or the server's wiring.

pub mod clients;
pub mod kubernetes;
pub mod nvml;
pub(crate) mod procfs;
pub mod sample;
