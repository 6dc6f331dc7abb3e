//! One listing from a registry's two sources: the syncer script's lines
//! first, then what the `images` entries chose, entry by entry. An image
//! listed again (by both, or by two entries) is mirrored once, and that is
//! said once; an entry marking it `immutable` marks it.

use std::collections::HashMap;

use crate::listing::script::{Listed, Listing};

/// `script`'s listing with `chosen` added after it.
pub fn union(host: &str, mut script: Listing, chosen: Vec<Listed>) -> Listing {
    let mut at: HashMap<String, usize> = script
        .images
        .iter()
        .enumerate()
        .map(|(n, l)| (l.reference.identity(), n))
        .collect();
    for listed in chosen {
        match at.get(&listed.reference.identity()) {
            Some(&n) => {
                let first = &mut script.images[n];
                log::info!(
                    "{host}: {} lists {}, which {} lists too; mirrored once",
                    listed.origin(),
                    listed.reference,
                    first.origin()
                );
                first.immutable |= listed.immutable;
            }
            None => {
                at.insert(listed.reference.identity(), script.images.len());
                script.images.push(listed);
            }
        }
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::script::parse_list;
    use crate::reference::Reference;

    fn chosen(entry: usize, reference: &str, immutable: bool) -> Listed {
        Listed {
            line: 9,
            reference: Reference::parse(reference).unwrap(),
            entry: Some(entry),
            immutable,
        }
    }

    #[test]
    fn script_lines_come_first_and_each_image_is_listed_once() {
        let script = parse_list("alpine\nquay.io/a/b:1\n");
        let all = union(
            "t.example",
            script,
            vec![
                chosen(0, "docker.io/library/alpine:latest", true),
                chosen(0, "quay.io/a/b:2", false),
                chosen(1, "quay.io/a/b:2", true),
            ],
        );
        let shown: Vec<(String, String, bool)> = all
            .images
            .iter()
            .map(|l| (l.origin(), l.reference.to_string(), l.immutable))
            .collect();
        let row = |o: &str, r: &str, i| (o.to_string(), r.to_string(), i);
        assert_eq!(
            shown,
            [
                row("line 1", "alpine", true),
                row("line 2", "quay.io/a/b:1", false),
                row(
                    "images[0] (line 9 of the configuration)",
                    "quay.io/a/b:2",
                    true
                ),
            ]
        );
    }
}
