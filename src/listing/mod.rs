//! Where a registry's image list comes from: its `syncerScript`
//! (`script`), whose output is read line by line, and the selection rules
//! that choose among a repository's tags (`select`, reading tags as
//! versions with `version`). A listing ends in references to mirror; what
//! happens to them is `run`'s.

pub mod script;
pub mod select;
pub mod version;
