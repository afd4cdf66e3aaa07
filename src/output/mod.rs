//! Outputs: everything that reads snapshots. `publish` pairs each snapshot with its rendered
//! `exposition`; `api`, `status_page` and `history` serve it; `cleanup` acts on it. None of them
//! writes back into a snapshot.

pub mod api;
pub(crate) mod api_allocator;
pub mod cleanup;
pub mod exposition;
pub mod history;
pub mod publish;
pub mod status_page;
