//! One run over one registry, in the order it happens: the engine made
//! ready (`readiness`), the run lock (`crate::flock`), the plan of what the
//! listing names (`plan`), whether each image is already at its target
//! (`freshness`, with what earlier runs recorded in `state`), the target
//! repositories made ready (`repositories`), the moves on the worker pool
//! (`workers`) with their retries (`retry`), all set up by `mirror`, and
//! what the run tells (`report`, and `down` for a registry that is down);
//! last, with `prune`, the tags the listing dropped go (`prune`).
//! Where images come from is `listing`'s business, how they move and who
//! picture-book is at each host (`Access`) are `engine`'s, and when runs
//! happen is `daemon`'s.

pub mod down;
pub mod freshness;
pub mod mirror;
pub mod plan;
pub mod prune;
pub mod readiness;
pub mod report;
pub mod repositories;
pub mod retry;
pub mod state;
pub mod workers;
