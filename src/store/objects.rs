//! The object directory: listing objects and measuring what they occupy.
//!
//! Objects are plain read-only files `objects/ab/cdef...` whose bytes hash (blake3)
//! to their name. Writing goes through [`Session`](crate::store::session::Session);
//! deleting only through [`gc`](crate::store::gc).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::hash::Hash;

/// One object file found on disk.
#[derive(Clone, Debug)]
pub struct ObjectFile {
    pub hash: Hash,
    pub path: PathBuf,
    /// Logical size.
    pub size: u64,
    /// Bytes allocated on disk (what `du` counts).
    pub allocated: u64,
}

/// What the object directory holds.
#[derive(Debug, Default)]
pub struct ObjectListing {
    pub objects: Vec<ObjectFile>,
    /// Files under `objects/` whose names are not object names.
    pub strays: Vec<PathBuf>,
    /// Allocated bytes of the directories themselves.
    pub dir_bytes: u64,
}

impl ObjectListing {
    /// Allocated bytes of everything under `objects/`: equals `du -s -B1 objects`.
    pub fn stored_bytes(&self) -> u64 {
        self.dir_bytes + self.objects.iter().map(|o| o.allocated).sum::<u64>()
    }
}

/// List every object file of the store.
pub fn list(store: &Store) -> Result<ObjectListing> {
    let root = store.objects_dir();
    let mut out = ObjectListing::default();
    out.dir_bytes += fs::symlink_metadata(&root).at(&root)?.blocks() * 512;
    let mut fans: Vec<_> = fs::read_dir(&root)
        .at(&root)?
        .collect::<std::io::Result<Vec<_>>>()
        .at(&root)?;
    fans.sort_by_key(|e| e.file_name());
    for fan in fans {
        let fan_path = fan.path();
        let fan_name = fan.file_name().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&fan_path).at(&fan_path)?;
        if !meta.is_dir() {
            out.strays.push(fan_path);
            continue;
        }
        out.dir_bytes += meta.blocks() * 512;
        for e in fs::read_dir(&fan_path).at(&fan_path)? {
            let e = e.at(&fan_path)?;
            let path = e.path();
            let meta = fs::symlink_metadata(&path).at(&path)?;
            let name = format!("{fan_name}{}", e.file_name().to_string_lossy());
            match Hash::from_hex(&name) {
                Some(hash) if meta.is_file() => out.objects.push(ObjectFile {
                    hash,
                    path,
                    size: meta.len(),
                    allocated: meta.blocks() * 512,
                }),
                _ => {
                    out.dir_bytes += meta.blocks() * 512;
                    out.strays.push(path);
                }
            }
        }
    }
    Ok(out)
}

/// Allocated bytes of every file and directory under `dir` (like `du -s -B1`:
/// hardlinked files once; trees deeper than PATH_MAX are fine). Entries that
/// vanish during the walk (RocksDB compacting) are skipped.
pub fn du(dir: &std::path::Path) -> Result<u64> {
    crate::store::fstree::allocated(dir).at(dir)
}

/// Open an object read-only, mapping "not found" to [`Error::MissingObject`].
pub fn open(store: &Store, hash: &Hash) -> Result<File> {
    let p = store.object_path(hash);
    match File::open(&p) {
        Ok(f) => Ok(f),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(Error::MissingObject(*hash)),
        Err(err) => Err(err).at(&p),
    }
}
