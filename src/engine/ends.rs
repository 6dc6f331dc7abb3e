//! Where a run's images come from (a registry, or a layout being loaded)
//! and where they go (the target registry, or a layout being exported), as
//! two small types whose methods answer what the run and the engines would
//! otherwise ask of `Option`s and modes. How the native engine reads and
//! writes each end is in `native`; which engine can is its
//! `Capabilities`.

use crate::layout::{Reader, Writer};

/// Where a run's images come from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The registries the syncer script names.
    Registry,
    /// A layout (`load --from`), which knows images by digest alone.
    Layout(&'a Reader),
}

/// Where a run's images go.
#[derive(Clone, Copy)]
pub enum Sink<'a> {
    /// The registry's target.
    Registry,
    /// A layout (`export`); the target is not asked.
    Layout(&'a Writer),
}

impl Source<'_> {
    /// Whether images come from registries (whose hosts are contacted, with
    /// credentials).
    pub fn is_registry(self) -> bool {
        matches!(self, Source::Registry)
    }

    /// What to read a manifest known as `reference` and `digest` by: a
    /// layout knows manifests by digest alone.
    pub fn manifest_key<'r>(self, reference: &'r str, digest: &'r str) -> &'r str {
        match self {
            Source::Registry => reference,
            Source::Layout(_) => digest,
        }
    }
}

impl Sink<'_> {
    /// Whether images go to the target registry: then the run takes its
    /// lock, asks it whether each image is up to date, and keeps state.
    pub fn is_registry(self) -> bool {
        matches!(self, Sink::Registry)
    }

    /// How an image moved here is told of when done.
    pub fn done_as(self) -> &'static str {
        match self {
            Sink::Registry => "mirrored",
            Sink::Layout(_) => "exported",
        }
    }
}

/// Whether a run from `source` to `sink` needs an engine that reads and
/// writes layouts.
pub fn needs_layouts(source: Source<'_>, sink: Sink<'_>) -> bool {
    !source.is_registry() || !sink.is_registry()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_registry_to_registry_run_does_without_layouts() {
        assert!(!needs_layouts(Source::Registry, Sink::Registry));
        let writer = Writer::planning(std::path::Path::new("/nonexistent/pb-ends"));
        assert!(needs_layouts(Source::Registry, Sink::Layout(&writer)));
        assert_eq!(Sink::Layout(&writer).done_as(), "exported");
        assert_eq!(Sink::Registry.done_as(), "mirrored");
    }
}
