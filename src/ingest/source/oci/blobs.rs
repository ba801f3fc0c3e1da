//! Where an image's files are: an OCI layout directory, or a plain tar
//! holding one (an OCI archive) or a docker archive, read in place through an
//! index of its members (no extraction). Also digests and the reader that
//! checks them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest as _;

use crate::archive::read::{MemberKind, TarReader};
use crate::ingest::source::tar::tar_error;
use crate::store::error::{Error, IoContext, Result};

/// Largest JSON document (index, manifest, config) taken into memory.
pub const MAX_JSON: u64 = 8 << 20;

/// A content digest `ALG:HEX` (sha256 or sha512), checked for shape so that
/// it can name a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub alg: &'static str,
    pub hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Option<Digest> {
        let (alg, hex) = s.split_once(':')?;
        let (alg, len) = match alg {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ => return None,
        };
        let ok = hex.len() == len
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Digest {
            alg,
            hex: hex.to_string(),
        })
    }

    /// Its path in an OCI layout.
    pub fn blob_path(&self) -> String {
        format!("blobs/{}/{}", self.alg, self.hex)
    }

    pub fn hasher(&self) -> Hasher {
        match self.alg {
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            _ => Hasher::Sha256(sha2::Sha256::new()),
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex)
    }
}

/// A running sha256 or sha512.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    /// `ALG:HEX` of what was fed.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// A reader that hashes and counts what passes through it; the totals stay
/// readable after the reader is gone.
pub struct Hashing<R> {
    inner: R,
    state: Arc<Mutex<(Hasher, u64)>>,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R, hasher: Hasher) -> (Hashing<R>, Arc<Mutex<(Hasher, u64)>>) {
        let state = Arc::new(Mutex::new((hasher, 0)));
        (
            Hashing {
                inner,
                state: state.clone(),
            },
            state,
        )
    }

    /// Read what is left, so that the digest covers all of it.
    pub fn drain(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0.update(&buf[..n]);
        st.1 += n as u64;
        Ok(n)
    }
}

/// The digest and byte count a [`Hashing`] reader saw.
pub fn seen(state: &Arc<Mutex<(Hasher, u64)>>) -> (String, u64) {
    let st = state.lock().unwrap_or_else(|p| p.into_inner());
    (st.0.clone().finish(), st.1)
}

/// An image's files by their path in the layout.
pub enum Blobs {
    /// An OCI layout directory.
    Dir(PathBuf),
    /// A plain tar archive: each member's data offset and size, and the
    /// targets of symlink members (docker archives link legacy layer paths).
    Tar {
        file: PathBuf,
        files: HashMap<String, (u64, u64)>,
        links: HashMap<String, String>,
    },
}

impl Blobs {
    /// Index the members of tar archive `file`.
    pub fn index_tar(file: &Path) -> Result<Blobs> {
        let f = File::open(file).at(file)?;
        let mut head = [0u8; 6];
        let n = (&f).read(&mut head).at(file)?;
        if crate::archive::compress::Compression::detect(&head[..n])
            != crate::archive::compress::Compression::None
        {
            return Err(Error::BadSource {
                path: file.to_path_buf(),
                reason:
                    "a compressed image archive; decompress it first (image archives are plain tar)"
                        .into(),
            });
        }
        (&f).seek(SeekFrom::Start(0)).at(file)?;
        let mut tar = TarReader::new(BufReader::with_capacity(64 << 10, f));
        let (mut files, mut links) = (HashMap::new(), HashMap::new());
        while let Some(m) = tar.next_member().map_err(|e| tar_error(file, e))? {
            let name = clean(&String::from_utf8_lossy(&m.name));
            match m.kind {
                MemberKind::File if m.sparse.is_none() => {
                    files.insert(name, (tar.position(), m.size));
                }
                MemberKind::Symlink | MemberKind::Hardlink => {
                    let target = String::from_utf8_lossy(&m.link).into_owned();
                    let target = if m.kind == MemberKind::Symlink {
                        match name.rsplit_once('/') {
                            Some((dir, _)) => clean(&format!("{dir}/{target}")),
                            None => clean(&target),
                        }
                    } else {
                        clean(&target)
                    };
                    links.insert(name, target);
                }
                _ => {}
            }
        }
        Ok(Blobs::Tar {
            file: file.to_path_buf(),
            files,
            links,
        })
    }

    /// Where the blobs are, for messages.
    pub fn label(&self) -> &Path {
        match self {
            Blobs::Dir(p) | Blobs::Tar { file: p, .. } => p,
        }
    }

    fn missing(&self, name: &str) -> Error {
        Error::BadSource {
            path: self.label().to_path_buf(),
            reason: format!("{name} is missing from the image"),
        }
    }

    /// Open file `name` (a layout path such as `blobs/sha256/HEX`): its
    /// reader and size.
    pub fn open(&self, name: &str) -> Result<(Box<dyn Read + Send>, u64)> {
        match self {
            Blobs::Dir(dir) => {
                if name.split('/').any(|c| c == ".." || c.is_empty()) {
                    return Err(self.missing(name));
                }
                let p = dir.join(name);
                let f = match File::open(&p) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(self.missing(name));
                    }
                    r => r.at(&p)?,
                };
                let size = f.metadata().at(&p)?.len();
                Ok((Box::new(BufReader::with_capacity(1 << 20, f)), size))
            }
            Blobs::Tar { file, files, links } => {
                let mut key = clean(name);
                for _ in 0..8 {
                    match links.get(&key) {
                        Some(t) => key = t.clone(),
                        None => break,
                    }
                }
                let &(offset, size) = files.get(&key).ok_or_else(|| self.missing(name))?;
                let mut f = File::open(file).at(file)?;
                f.seek(SeekFrom::Start(offset)).at(file)?;
                Ok((
                    Box::new(BufReader::with_capacity(1 << 20, f.take(size))),
                    size,
                ))
            }
        }
    }

    /// Read a whole small file (JSON), checking its digest when one is given.
    pub fn read_small(&self, name: &str, digest: Option<&Digest>) -> Result<Vec<u8>> {
        let (r, size) = self.open(name)?;
        if size > MAX_JSON {
            return Err(Error::BadSource {
                path: self.label().to_path_buf(),
                reason: format!("{name}: {size} bytes is too large for an image document"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        r.take(MAX_JSON).read_to_end(&mut data).at(self.label())?;
        if let Some(d) = digest {
            let mut h = d.hasher();
            h.update(&data);
            let got = h.finish();
            if got != d.to_string() {
                return Err(Error::BadSource {
                    path: self.label().to_path_buf(),
                    reason: format!("{name}: its bytes hash to {got}, not to its digest {d}"),
                });
            }
        }
        Ok(data)
    }
}

/// A member name without `./`, leading `/` or empty components.
fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_for_shape() {
        let hex = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{hex}")).is_some());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(Digest::parse("sha256:../../etc/passwd").is_none());
        assert!(Digest::parse(&format!("md5:{hex}")).is_none());
        assert_eq!(clean("./a//b/../c"), "a/c");
    }
}
