//! Where a registry's image list comes from: today its `syncerScript`
//! (`script`), whose output is read line by line; the selection rules of
//! the configuration (semver, patterns, "latest N") belong here too. A
//! listing ends in references to mirror; what happens to them is `run`'s.

pub mod script;
