//! nvml-sim: a simulated `libnvidia-ml.so.1` whose GPUs, memory and processes come from a scenario.
//!
//! Built as a `cdylib`, it exports the NVML C entry points that nvml-wrapper and nvidia-ml-py use
//! for memory monitoring, so the exporter can be tested through its production code path on
//! machines without a GPU. The crate is split so the scenario model stays independent of the C ABI:
//!
//! - [`scenario`]: TOML parsing and validation into the model (the only place that validates);
//! - [`model`]: devices, memory pools, processes and their evaluation at a scenario time;
//! - [`faults`]: scheduled faults and the questions the FFI layer asks of them;
//! - [`time`]: scenario time (clock × speed, a time file, or an in-process override);
//! - [`state`]: the reference-counted init and the current simulation;
//! - [`abi`]: NVML return codes and struct layouts;
//! - `ffi`: the exported `extern "C"` functions.

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("nvml-sim targets 64-bit Linux, like the NVML ABI it imitates");

pub mod abi;
pub mod faults;
mod ffi;
pub mod model;
pub mod scenario;
pub mod state;
pub mod time;

/// Records the load time for `init_failure` faults with `for = ...`. Runs as an ELF constructor
/// when the library is loaded; it only reads the monotonic clock (the scenario is read at init).
extern "C" fn on_load() {
    state::mark_loaded();
}

#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn() = on_load;
