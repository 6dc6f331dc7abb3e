//! Content digests: sha256 (from ring, which rustls already brings) of bytes
//! and of streams as they pass, spelt `sha256:<hex>` as registries spell them.
//! What a mismatch means is the caller's business.

use std::io::{self, Read};

use ring::digest::{Context, SHA256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let mut hasher = Hasher::new();
    hasher.update(bytes);
    hasher.finish()
}

/// `sha256:0123456789ab`: a digest cut short for messages.
pub fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// A sha256 being computed.
pub struct Hasher(Context);

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    /// A new hasher.
    pub fn new() -> Hasher {
        Hasher(Context::new(&SHA256))
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// `sha256:<hex>` of everything added.
    pub fn finish(self) -> String {
        let digest = self.0.finish();
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for b in digest.as_ref() {
            text.push_str(&format!("{b:02x}"));
        }
        text
    }
}

/// Whether `digest` is one this module can check (`sha256:` and 64 hex).
pub fn is_sha256(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A reader that hashes what passes through it and counts it.
pub struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> Hashing<R> {
    /// Hashes what is read from `inner`.
    pub fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Hasher::new(),
            read: 0,
        }
    }

    /// How many bytes have passed.
    pub fn count(&self) -> u64 {
        self.read
    }

    /// The digest of what has passed, and how many bytes it was.
    pub fn finish(self) -> (String, u64) {
        (self.hasher.finish(), self.read)
    }

    /// The digest of what has passed so far.
    pub fn digest(&self) -> String {
        Hasher(self.hasher.0.clone()).finish()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut reader = Hashing::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(
            reader.finish(),
            (
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
        assert!(is_sha256(&sha256(b"x")));
        assert!(!is_sha256("sha256:xyz"));
        assert!(!is_sha256("sha512:00"));
    }
}
