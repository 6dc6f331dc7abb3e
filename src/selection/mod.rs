//! Choosing among a repository's tags, with no registry in sight: how a
//! tag reads as a version (`version`) and the rules that choose (`rules`:
//! `semver`, `match`, `exclude`, `latest`, `allTags`). The configuration
//! checks rules with them; `listing` and the `tags` command apply them to
//! the tags a registry lists.

pub mod rules;
pub mod version;
