//! The tar format, as far as layouts need it: the members of an archive
//! found by scanning its headers (ustar, with the PAX and GNU extensions
//! other writers use for long names and large sizes), and members appended
//! one at a time to an archive being written. A file cut short, or a header
//! that does not add up, ends the scan there; what came before is read.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::copy_exact;

/// The largest size the octal size field holds (8 GiB less a byte); larger
/// ones are written in base 256, as GNU tar does.
const OCTAL_MAX: u64 = 0o77_777_777_777;
/// The largest PAX or GNU long-name record read.
const MAX_EXTENDED: u64 = 1 << 20;

/// What a tar archive holds.
pub(super) struct Members {
    /// Each regular member's offset and size, by name.
    pub found: HashMap<String, (u64, u64)>,
    /// Members whose data the file cuts short.
    pub cut: HashSet<String>,
    /// Why the scan ended before the end-of-archive blocks (the file ends,
    /// or a header is damaged); None when the archive ends as it should.
    pub short: Option<String>,
}

/// What an extended header says of the member after it.
#[derive(Default)]
struct Pending {
    name: Option<String>,
    size: Option<u64>,
}

/// The members of the tar archive `path`.
pub(super) fn members(path: &Path) -> io::Result<Members> {
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut members = Members {
        found: HashMap::new(),
        cut: HashSet::new(),
        short: Some("it ends before its end-of-archive blocks".into()),
    };
    let mut pending = Pending::default();
    let mut offset = 0u64;
    let mut header = [0u8; 512];
    while offset + 512 <= total {
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut header)?;
        if header.iter().all(|b| *b == 0) {
            members.short = None;
            break;
        }
        if !checksum_ok(&header) {
            members.short = Some(format!("a header at byte {offset} is damaged"));
            break;
        }
        let size = pending
            .size
            .take()
            .unwrap_or_else(|| number(&header[124..136]));
        let data = offset + 512;
        let name = pending.name.take().unwrap_or_else(|| header_name(&header));
        match header[156] {
            b'x' | b'L' if data + size <= total && size <= MAX_EXTENDED => {
                let mut bytes = vec![0u8; size as usize];
                file.read_exact(&mut bytes)?;
                pending = if header[156] == b'x' {
                    pax(&bytes)
                } else {
                    Pending {
                        name: Some(c_string(&bytes)),
                        size: None,
                    }
                };
            }
            b'0' | 0 => {
                if data + size > total {
                    members.cut.insert(name.clone());
                }
                members.found.insert(name, (data, size));
            }
            _ => {}
        }
        offset = data + size.div_ceil(512) * 512;
    }
    if members.found.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            members.short.unwrap_or_else(|| "it holds no file".into()),
        ));
    }
    Ok(members)
}

/// A member's name: ustar's prefix and name fields, without `./`.
fn header_name(header: &[u8; 512]) -> String {
    let name = c_string(&header[..100]);
    let prefix = if &header[257..262] == b"ustar" {
        c_string(&header[345..500])
    } else {
        String::new()
    };
    let full = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    full.trim_start_matches("./").to_string()
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The `path` and `size` of PAX records (`LEN key=value\n` each).
fn pax(bytes: &[u8]) -> Pending {
    let mut pending = Pending::default();
    let text = String::from_utf8_lossy(bytes);
    for record in text.split_terminator('\n') {
        let Some((_, pair)) = record.split_once(' ') else {
            continue;
        };
        match pair.split_once('=') {
            Some(("path", v)) => pending.name = Some(v.trim_start_matches("./").to_string()),
            Some(("size", v)) => pending.size = v.parse().ok(),
            _ => {}
        }
    }
    pending
}

/// A numeric field: octal text, or base 256 when its first byte has the
/// high bit set.
fn number(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return field[1..].iter().fold(0, |n, b| (n << 8) | u64::from(*b));
    }
    field
        .iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0, |n, b| n * 8 + u64::from(b - b'0'))
}

fn checksum_ok(header: &[u8; 512]) -> bool {
    let stored = number(&header[148..156]);
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    stored == sum
}

/// A ustar header for a regular file `name` (at most 100 bytes) of `size`
/// bytes.
fn header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let field = |h: &mut [u8; 512], at: usize, len: usize, value: u64| {
        let text = format!("{value:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(text.as_bytes());
    };
    field(&mut h, 100, 8, 0o644);
    field(&mut h, 108, 8, 0);
    field(&mut h, 116, 8, 0);
    if size <= OCTAL_MAX {
        field(&mut h, 124, 12, size);
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    field(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Appends the member `name` (`size` bytes from `data`) to the archive
/// `file`. When that fails (the source broke off, the disk is full, the run
/// is stopping), the archive is cut back to where the member began, so that
/// it stays whole and the member can be written again; the error says
/// whether it could be (false: the archive is lost).
pub(super) fn append(
    file: &mut File,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<(), (io::Error, bool)> {
    let start = file.stream_position().map_err(|e| (e, false))?;
    let written = (|| {
        file.write_all(&header(name, size))?;
        copy_exact(data, file, size)?;
        let pad = (512 - size % 512) % 512;
        file.write_all(&vec![0u8; pad as usize])
    })();
    let Err(e) = written else {
        return Ok(());
    };
    let undone = file
        .set_len(start)
        .and_then(|_| file.seek(SeekFrom::Start(start)));
    Err((e, undone.is_ok()))
}

/// Ends the archive: two zero blocks.
pub(super) fn end(file: &mut File) -> io::Result<()> {
    file.write_all(&[0u8; 1024])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_past_eight_gib_are_written_in_base_256_and_read_back() {
        for size in [0, 511, OCTAL_MAX, OCTAL_MAX + 1, 10 << 30] {
            let h = header("blobs/sha256/x", size);
            assert!(checksum_ok(&h));
            assert_eq!(number(&h[124..136]), size);
        }
    }

    #[test]
    fn pax_and_gnu_long_names_and_sizes_are_honoured() {
        let dir = std::env::temp_dir().join(format!("pb-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.tar");
        let mut bytes = Vec::new();
        let mut member = |kind: u8, name: &str, data: &[u8], size_field: u64| {
            let mut h = header(name, size_field);
            h[156] = kind;
            h[148..156].copy_from_slice(b"        ");
            let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            bytes.extend_from_slice(&h);
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        };
        let long = format!("blobs/sha256/{}", "a".repeat(120));
        let record = format!("path={long}\n");
        let pax_text = format!("{} {record}", record.len() + 4);
        assert_eq!(pax_text.len(), record.len() + 4, "LEN counts itself");
        member(
            b'x',
            "PaxHeaders/x",
            pax_text.as_bytes(),
            pax_text.len() as u64,
        );
        member(b'0', "short-name", b"hello", 5);
        member(b'x', "PaxHeaders/y", b"10 size=3\n", 10);
        member(b'0', "sized", b"abc", 0);
        member(b'L', "././@LongLink", b"gnu/long/name\0", 14);
        member(b'0', "cut-name", b"xy", 2);
        bytes.extend_from_slice(&[0u8; 1024]);
        std::fs::write(&path, &bytes).unwrap();
        let m = members(&path).unwrap();
        assert!(m.short.is_none());
        assert_eq!(m.found[&long].1, 5);
        assert_eq!(m.found["sized"].1, 3);
        assert_eq!(m.found["gnu/long/name"].1, 2);
        std::fs::write(&path, &bytes[..bytes.len() - 1024 - 600]).unwrap();
        let m = members(&path).unwrap();
        assert!(m.short.is_some());
        bytes[512 * 6 + 10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let m = members(&path).unwrap();
        assert!(m.short.unwrap().contains("damaged"), "stops at the damage");
        assert_eq!(m.found.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
