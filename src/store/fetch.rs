//! Where objects the store lacks come from: an [`ObjectSource`] hands over an
//! object's bytes by hash, and [`fetch`] brings them in the one way anything
//! enters `objects/`: through a write session (pinned against gc, staged,
//! hashed again, published durably by rename). Whatever the source, nothing it
//! says is trusted: bytes that do not hash to the name are never published.
//!
//! Sources: [`DirObjects`] (regular files under directories that hold the same
//! content, e.g. the trees templates came from; used by `verify --repair`). A
//! remote (S3, for push/pull and lazy pull) is a sibling implementation; every
//! object a mount uses stays a local file under `objects/`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::store::Store;
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::session::Session;

/// Something that can hand over objects by hash.
pub trait ObjectSource: Send + Sync {
    /// What the source is, for messages.
    fn describe(&self) -> String;
    /// Write the `size` bytes of object `hash` into `out` (an empty staging
    /// file). `Ok(false)`: the source does not hold it. The caller checks the
    /// bytes; a source may be wrong.
    fn fetch_into(&self, hash: &Hash, size: u64, out: &File) -> Result<bool>;
}

/// The regular files under some directories, indexed by the hash of those whose
/// size is wanted.
pub struct DirObjects {
    dirs: Vec<PathBuf>,
    index: HashMap<Hash, PathBuf>,
}

impl DirObjects {
    /// Hash every regular file under `dirs` (symlinks not followed) whose size
    /// is one of `wanted`'s, in parallel. A directory that does not exist is an
    /// error naming it; an unreadable file is skipped.
    pub fn index(dirs: &[PathBuf], wanted: &HashMap<Hash, u64>) -> Result<DirObjects> {
        let sizes: HashSet<u64> = wanted.values().copied().collect();
        let mut candidates = Vec::new();
        for d in dirs {
            collect_files(d, &sizes, &mut candidates)?;
        }
        let hashed: Vec<(PathBuf, Option<Hash>)> = candidates
            .into_par_iter()
            .map(|p| {
                let h = File::open(&p).and_then(|f| fsutil::hash_read(&f)).ok();
                (p, h.map(Hash::from))
            })
            .collect();
        let mut index = HashMap::new();
        for (p, h) in hashed {
            if let Some(h) = h.filter(|h| wanted.contains_key(h)) {
                index.entry(h).or_insert(p);
            }
        }
        Ok(DirObjects {
            dirs: dirs.to_vec(),
            index,
        })
    }
}

impl ObjectSource for DirObjects {
    fn describe(&self) -> String {
        let names: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        names.join(", ")
    }

    fn fetch_into(&self, hash: &Hash, size: u64, out: &File) -> Result<bool> {
        let Some(p) = self.index.get(hash) else {
            return Ok(false);
        };
        let src = File::open(p).at(p)?;
        fsutil::copy_segments(&src, out, &[(0, size)], size).at(p)?;
        Ok(true)
    }
}

/// Bring the `wanted` objects (hash -> size) from `source` into the store,
/// replacing damaged files of the same names. Returns the hashes published;
/// what the source lacks, or gave wrong bytes for, is not among them.
pub fn fetch(
    store: &Store,
    source: &dyn ObjectSource,
    wanted: &HashMap<Hash, u64>,
) -> Result<Vec<Hash>> {
    let session = Session::begin(store)?;
    for (h, &size) in wanted {
        session.pin(h)?;
        let (staged, out) = session.stage_file()?;
        if !source.fetch_into(h, size, &out)? {
            continue;
        }
        if Hash::from(fsutil::hash_mapped(&out).at(&staged)?) != *h {
            log::warn!(
                "{}: wrong bytes for object {h}; not used",
                source.describe()
            );
            continue;
        }
        session.staged(staged, *h);
    }
    session.publish_replacing()
}

/// Bring one object from `source` (a lazily pulled template's remote, on
/// first open): staged in its own session, synced (the file alone: a crash
/// loses at most the rename, never leaves a torn object), hashed, published.
/// `Ok(false)`: the source lacks it or gave wrong bytes (logged).
pub fn fetch_one(store: &Store, source: &dyn ObjectSource, hash: &Hash, size: u64) -> Result<bool> {
    let session = Session::begin(store)?;
    session.pin(hash)?;
    let (staged, out) = session.stage_file()?;
    if !source.fetch_into(hash, size, &out)? {
        return Ok(false);
    }
    out.sync_data().at(&staged)?;
    if Hash::from(fsutil::hash_mapped(&out).at(&staged)?) != *hash {
        log::warn!(
            "{}: wrong bytes for object {hash}; not used",
            source.describe()
        );
        return Ok(false);
    }
    let dest = store.object_path(hash);
    fsutil::failpoint_io("publish-rename")
        .and_then(|()| std::fs::rename(&staged, &dest))
        .at(&dest)?;
    Ok(true)
}

/// Regular files under `dir` (not following symlinks) whose size is in `sizes`.
fn collect_files(dir: &Path, sizes: &HashSet<u64>, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).at(dir)?;
    if meta.is_file() {
        if sizes.contains(&meta.len()) {
            out.push(dir.to_path_buf());
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return Ok(());
    }
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let ft = e.file_type().at(e.path())?;
        if ft.is_dir() || ft.is_file() {
            collect_files(&e.path(), sizes, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory source that may lie.
    struct Memory(HashMap<Hash, Vec<u8>>);

    impl ObjectSource for Memory {
        fn describe(&self) -> String {
            "memory".into()
        }
        fn fetch_into(&self, hash: &Hash, _size: u64, out: &File) -> Result<bool> {
            use std::io::Write;
            match self.0.get(hash) {
                Some(b) => {
                    (&*out).write_all(b).at("memory")?;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
    }

    #[test]
    fn only_bytes_that_hash_to_their_name_are_published() {
        let d = tempfile::tempdir().expect("tempdir");
        let store = Store::init(&d.path().join("s")).expect("init");
        let good = b"good bytes".to_vec();
        let (hg, hl, hm) = (Hash::of(&good), Hash::of(b"claimed"), Hash::of(b"absent"));
        let src = Memory(HashMap::from([(hg, good.clone()), (hl, b"a lie".to_vec())]));
        let wanted = HashMap::from([(hg, 10), (hl, 7), (hm, 6)]);
        let got = fetch(&store, &src, &wanted).expect("fetch");
        assert_eq!(got, vec![hg]);
        assert_eq!(std::fs::read(store.object_path(&hg)).expect("object"), good);
        assert!(!store.object_path(&hl).exists());
        assert!(!store.object_path(&hm).exists());
    }
}
