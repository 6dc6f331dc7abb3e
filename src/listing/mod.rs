//! Where a registry's image list comes from: its `syncerScript`
//! (`script`), whose output is read line by line, and its `images` entries
//! (`entries`), whose rules choose among a repository's tags (the rules
//! themselves are `selection`'s); `union` joins the two. A listing ends in
//! references to mirror; what happens to them is `run`'s.

pub mod entries;
pub mod script;
pub mod union;
