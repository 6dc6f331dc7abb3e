//! One run over one registry, in the order it happens: the run lock
//! (`crate::flock`), the plan of what the listing names (`plan`), whether each image
//! is already at its target (`freshness`, with what earlier runs recorded in
//! `state`), the target repositories made ready (`repositories`), the moves
//! with their retries (`retry`), all driven by `mirror`, and what the run
//! tells (`report`). Where images come from is `listing`'s business, how they
//! move is `engine`'s, and when runs happen is `daemon`'s.

pub mod freshness;
pub mod mirror;
pub mod plan;
pub mod report;
pub mod repositories;
pub mod retry;
pub mod state;
