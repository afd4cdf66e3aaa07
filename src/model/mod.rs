//! The model: the engine turns each sample into a snapshot, applying the limit `policy` and the
//! leak `drift`. It imports the sources' types and nothing downstream.

pub mod drift;
pub mod engine;
pub mod policy;
