//! Manifests: the full description of a file tree, every path with its metadata
//! and, for regular files, the hash of its content.
//!
//! On-disk encoding (stored as one value in the metadata database):
//! `b"VZM1"` followed by a zstd frame of the postcard encoding of [`Manifest`].
//! The magic changes whenever the layout does; decoders reject anything else.

use serde::{Deserialize, Serialize};

use crate::store::hash::Hash;

const MAGIC: &[u8; 4] = b"VZM1";

/// Bound on a manifest's decompressed encoding (some ten million entries): a
/// manifest from elsewhere cannot make a decoder allocate without limit.
pub const MAX_ENCODED: u64 = 1 << 30;

/// The type of a tree entry. Ingest skips sockets; a container may create them.
/// New variants go at the end (postcard encodes the variant index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

impl Kind {
    /// The kind of a file type as `lstat` reports it.
    pub fn of_file_type(ft: &std::fs::FileType) -> Kind {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else if ft.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        }
    }

    /// The kind named by the file type bits of a mode (`S_IFMT`); 0 means a
    /// regular file, as mknod takes it.
    pub fn of_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => return None,
        })
    }
}

/// One path in a tree with all the metadata that is restored on export and served
/// by a mount. Access and change times are not kept (they cannot be restored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the tree root, as raw bytes (not necessarily UTF-8);
    /// empty for the root directory itself. Components are separated by `/`.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Logical size in bytes (files), target length (symlinks), else 0.
    pub size: u64,
    /// Content hash; `Some` exactly for regular files.
    pub hash: Option<Hash>,
    /// Symlink target bytes; empty for other kinds.
    pub target: Vec<u8>,
    /// Device number for character and block devices, else 0.
    pub rdev: u64,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Hardlink group: entries with the same non-zero group are one inode.
    /// The first entry of a group (in path order) is its leader.
    pub link_group: u32,
}

/// A path's parent and last name; `None` for the root (the empty path).
pub fn split_path(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.is_empty() {
        return None;
    }
    Some(match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    })
}

impl Entry {
    /// Bytes of file content this entry describes (0 for non-files).
    pub fn file_bytes(&self) -> u64 {
        if self.kind == Kind::File {
            self.size
        } else {
            0
        }
    }
}

/// A tree: entries sorted by path bytes, so every directory precedes its contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<Entry>,
}

/// Why a manifest could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a vzstore manifest (bad magic)")]
    Magic,
    #[error("damaged compression: {0}")]
    Zstd(std::io::Error),
    #[error("damaged encoding: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("entries are not sorted or not unique at {0:?}")]
    Order(String),
    #[error("a regular file has no hash, or another kind has one, at {0:?}")]
    Hash(String),
}

impl Manifest {
    /// Sort entries into canonical order (by path bytes).
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// Encode to the on-disk form.
    pub fn encode(&self) -> Vec<u8> {
        let raw = postcard::to_stdvec(self).expect("encoding to a Vec cannot fail");
        let mut out = MAGIC.to_vec();
        // Level 3: manifests are small next to the data; this keeps ingest fast.
        let z = zstd::bulk::compress(&raw, 3).expect("zstd compression of a buffer cannot fail");
        out.extend_from_slice(&z);
        out
    }

    /// Decode and check the on-disk form. Never panics on any input, and
    /// never decompresses more than [`MAX_ENCODED`] bytes.
    pub fn decode(data: &[u8]) -> Result<Manifest, DecodeError> {
        use std::io::Read;
        let body = data.strip_prefix(MAGIC).ok_or(DecodeError::Magic)?;
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(body)
            .and_then(|d| d.take(MAX_ENCODED + 1).read_to_end(&mut raw))
            .map_err(DecodeError::Zstd)?;
        if raw.len() as u64 > MAX_ENCODED {
            return Err(DecodeError::Zstd(std::io::Error::other(
                "it decompresses to more than 1 GiB",
            )));
        }
        let m: Manifest = postcard::from_bytes(&raw)?;
        for w in m.entries.windows(2) {
            if w[0].path >= w[1].path {
                return Err(DecodeError::Order(
                    String::from_utf8_lossy(&w[1].path).into_owned(),
                ));
            }
        }
        for e in &m.entries {
            if (e.kind == Kind::File) != e.hash.is_some() {
                return Err(DecodeError::Hash(
                    String::from_utf8_lossy(&e.path).into_owned(),
                ));
            }
        }
        Ok(m)
    }

    /// Check what every tree the store records satisfies, for a manifest from
    /// a source or from elsewhere (a remote): entries sorted and unique, the
    /// root directory first, every path's components non-empty, not `.` or
    /// `..`, without NUL and at most 255 bytes, paths at most 4095 bytes,
    /// every parent a directory of the tree, permission bits within 0o7777,
    /// content hashes exactly on regular files, symlink targets of 1 to 4095
    /// bytes, and the names of one hardlink group of one kind and content.
    /// The error says which path and why.
    pub fn validate(&self) -> Result<(), String> {
        let name = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        match self.entries.first() {
            Some(e) if e.path.is_empty() && e.kind == Kind::Dir => {}
            _ => return Err("the tree has no root directory".into()),
        }
        for w in self.entries.windows(2) {
            if w[0].path == w[1].path {
                return Err(format!("{} appears twice", name(&w[1].path)));
            }
            if w[0].path > w[1].path {
                return Err(format!(
                    "{}: entries are not in path order",
                    name(&w[1].path)
                ));
            }
        }
        let mut dirs = std::collections::HashSet::new();
        dirs.insert(&b""[..]);
        let mut groups: std::collections::HashMap<u32, (Kind, Option<Hash>)> =
            std::collections::HashMap::new();
        for e in &self.entries[1..] {
            let bad = |why: &str| Err(format!("{}: {why}", name(&e.path)));
            if e.path.len() > 4095 {
                return bad("the path is longer than 4095 bytes");
            }
            for c in e.path.split(|&b| b == b'/') {
                if c.is_empty() || c == b"." || c == b".." || c.contains(&0) || c.len() > 255 {
                    return bad(
                        "a path component is empty, '.', '..', holds NUL or is longer than 255 bytes",
                    );
                }
            }
            let parent = split_path(&e.path).map_or(&b""[..], |(p, _)| p);
            if !dirs.contains(parent) {
                return bad("its parent is not a directory of the tree");
            }
            if e.kind == Kind::Dir {
                dirs.insert(&e.path[..]);
            }
            if (e.kind == Kind::File) != e.hash.is_some() {
                return bad("a regular file without content, or another kind with content");
            }
            if e.mode & !0o7777 != 0 {
                return bad("permission bits beyond 0o7777");
            }
            if e.kind == Kind::Symlink && (e.target.is_empty() || e.target.len() > 4095) {
                return bad("a symlink target must have 1 to 4095 bytes");
            }
            if e.link_group != 0 {
                if e.kind == Kind::Dir {
                    return bad("a directory in a hardlink group");
                }
                let first = groups.entry(e.link_group).or_insert((e.kind, e.hash));
                if *first != (e.kind, e.hash) {
                    return bad("names of one hardlink group differ in kind or content");
                }
            }
        }
        Ok(())
    }

    /// The leader of each hardlink group: group -> index of its first entry in
    /// path order. The leader's inode (and content) is the group's.
    pub fn link_leaders(&self) -> std::collections::HashMap<u32, usize> {
        let mut out = std::collections::HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.link_group != 0 {
                out.entry(e.link_group).or_insert(i);
            }
        }
        out
    }

    /// Sum of logical file bytes, counting each hardlink group once.
    pub fn logical_bytes(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.entries
            .iter()
            .filter(|e| e.link_group == 0 || seen.insert(e.link_group))
            .map(Entry::file_bytes)
            .sum()
    }

    /// The manifest's identity: blake3 of its canonical (uncompressed) encoding.
    /// Equal trees have equal digests; it names the template's kernel image.
    pub fn digest(&self) -> Hash {
        let raw = postcard::to_stdvec(self).expect("encoding to a Vec cannot fail");
        Hash::of(&raw)
    }

    /// Every distinct content hash the manifest names, with its size.
    pub fn objects(&self) -> impl Iterator<Item = (Hash, u64)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.hash.map(|h| (h, e.size)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::default();
        for (p, kind) in [("", Kind::Dir), ("a", Kind::File), ("a/b", Kind::Symlink)] {
            m.entries.push(Entry {
                path: p.as_bytes().to_vec(),
                kind,
                mode: 0o4755,
                uid: 1,
                gid: 2,
                mtime_sec: -5,
                mtime_nsec: 999_999_999,
                size: 3,
                hash: (kind == Kind::File).then(|| Hash::of(b"abc")),
                target: if kind == Kind::Symlink {
                    b"\xff/x".to_vec()
                } else {
                    vec![]
                },
                rdev: 0,
                xattrs: vec![(b"user.k".to_vec(), vec![0, 1, 2])],
                link_group: 0,
            });
        }
        m
    }

    #[test]
    fn validate_accepts_a_tree_and_names_what_is_wrong() {
        let mut good = sample();
        good.entries[1].kind = Kind::Dir;
        good.entries[1].hash = None;
        let mut f = good.entries[1].clone();
        f.path = b"f".to_vec();
        f.kind = Kind::File;
        f.hash = Some(Hash::of(b"abc"));
        good.entries.push(f);
        assert_eq!(good.validate(), Ok(()));
        let broken = |edit: &dyn Fn(&mut Manifest)| {
            let mut m = good.clone();
            edit(&mut m);
            m.validate().expect_err("refused")
        };
        let e = broken(&|m| m.entries[3].path = b"../f".to_vec());
        assert!(e.contains("'..'") || e.contains("not in path order"), "{e}");
        let e = broken(&|m| m.entries[2].path = b"a/../b".to_vec());
        assert!(e.contains("'..'"), "{e}");
        let e = broken(&|m| m.entries[3].path = b"g/h".to_vec());
        assert!(e.contains("parent"), "{e}");
        let e = broken(&|m| m.entries[3].hash = None);
        assert!(e.contains("without content"), "{e}");
        let e = broken(&|m| m.entries[3].mode = 0o170755);
        assert!(e.contains("0o7777"), "{e}");
        let e = broken(&|m| m.entries[2].target.clear());
        assert!(e.contains("symlink target"), "{e}");
        let e = broken(&|m| m.entries.swap(2, 3));
        assert!(e.contains("order"), "{e}");
        let e = broken(&|m| m.entries.remove(0).path.clear());
        assert!(e.contains("root"), "{e}");
        let e = broken(&|m| {
            m.entries[2].link_group = 1;
            m.entries[3].link_group = 1;
        });
        assert!(e.contains("hardlink"), "{e}");
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    /// Golden test of the on-disk format: if this fails, the format changed and
    /// the magic (and a migration) must change with it.
    #[test]
    fn golden_postcard_layout() {
        let raw = postcard::to_stdvec(&sample()).unwrap();
        let digest = Hash::of(&raw).to_hex();
        assert_eq!(
            digest,
            include_str!("../../tests/golden/manifest-v1.blake3").trim(),
            "manifest encoding changed"
        );
    }

    proptest::proptest! {
        /// Fuzz-style: the decoder never panics, whatever the bytes, including
        /// valid frames with damaged bodies.
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = Manifest::decode(&data);
            let mut framed = MAGIC.to_vec();
            framed.extend(zstd::bulk::compress(&data, 1).unwrap());
            let _ = Manifest::decode(&framed);
        }

        /// Flipping any byte of a valid encoding never panics either.
        #[test]
        fn damaged_encoding_never_panics(pos in 0usize..4096, bit in 0u8..8) {
            let mut enc = sample().encode();
            let p = pos % enc.len();
            enc[p] ^= 1 << bit;
            let _ = Manifest::decode(&enc);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(Manifest::decode(b"nope"), Err(DecodeError::Magic)));
        assert!(Manifest::decode(b"VZM1\x28\xb5\x2f\xfd garbage").is_err());
        let mut m = sample();
        m.entries.swap(0, 1);
        assert!(matches!(
            Manifest::decode(&m.encode()),
            Err(DecodeError::Order(_))
        ));
    }
}
