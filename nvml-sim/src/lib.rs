//! nvml-sim: a simulated `libnvidia-ml.so.1` whose GPUs, memory and processes come from a scenario.
//!
//! Built as a `cdylib`, it exports the NVML C entry points that nvml-wrapper and nvidia-ml-py use
//! for memory monitoring, so the exporter can be tested through its production code path on
//! machines without a GPU. The crate is split so the scenario model stays independent of the C ABI:
//!
//! - [`units`]: sizes, rates and durations written as a number or a string;
//! - [`faults`]: scheduled faults as plain data;
//! - [`model`]: devices, memory pools, processes and their evaluation at a scenario time,
//!   including the fault questions the FFI layer asks;
//! - [`scenario`]: TOML parsing and validation into the model (the only place that validates);
//! - [`time`]: scenario time (clock × speed, a time file, or an in-process override);
//! - [`state`]: the reference-counted init and the current simulation;
//! - [`abi`]: NVML return codes and struct layouts;
//! - `ffi`: the exported `extern "C"` functions.
//!
//! Imports go one way, from the C edge down to plain data; no module uses one above it:
//!
//! ```text
//! ffi → state → scenario → model → faults
//!  │      │        │         └────→ units
//!  │      │        └──────────────→ units, faults
//!  │      └→ time, model, faults
//!  └→ abi, time, model, faults, scenario (MAX_MIG_DEVICES)
//! ```
//!
//! `units`, `faults`, `time` and `abi` import nothing from the crate.

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("nvml-sim targets 64-bit Linux, like the NVML ABI it imitates");

pub mod abi;
pub mod faults;
mod ffi;
pub mod model;
pub mod scenario;
pub mod state;
pub mod time;
pub mod units;

/// Records the load time for `init_failure` faults with `for = ...`. Runs as an ELF constructor
/// when the library is loaded; it only reads the monotonic clock (the scenario is read at init).
extern "C" fn on_load() {
    state::mark_loaded();
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
