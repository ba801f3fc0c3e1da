//! The store core: a directory holding content-addressed objects, a metadata
//! database and per-container areas. Never imports `fuser` or `clap`.
//!
//! Layout of a store directory (see ARCHITECTURE.md):
//!
//! ```text
//! <store>/vzstore-store        marker and format version
//! <store>/objects/ab/cdef...   immutable blobs named by blake3, mode 0444
//! <store>/meta/                RocksDB: templates, manifests, stat cache
//! <store>/locks/               flock files serialising writers (meta, gc)
//! <store>/tmp/                 staging for atomic renames, ingest sessions, gc trash
//! <store>/private/<CT>/        a container's own data
//! <store>/root/<CT>/           default mount point
//! ```

pub mod container;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod gc;
pub mod hash;
pub mod ingest;
pub mod manifest;
pub mod meta;
pub mod name;
pub mod objects;
pub mod report;
pub mod session;
pub mod sys;
pub mod template;
pub mod verify;

use std::fs;
use std::path::{Path, PathBuf};

pub use error::{Error, IoContext, Result};
pub use hash::Hash;

/// Name of the marker file that makes a directory a store.
pub const MARKER: &str = "vzstore-store";
/// Store format version written by this build.
pub const FORMAT: u32 = 1;

const SUBDIRS: [&str; 6] = ["objects", "meta", "locks", "tmp", "private", "root"];

/// An opened store directory. Cheap to clone; holds no open files.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Create a store at `root`, or do nothing if one is already there.
    /// Refuses a non-empty directory that is not a store (a directory holding only
    /// the store's own sub-directories, left by an interrupted `init`, is finished).
    pub fn init(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).at(root)?;
        let root = &fs::canonicalize(root).at(root)?;
        let marker = root.join(MARKER);
        if !marker.exists() {
            for e in fs::read_dir(root).at(root)? {
                let e = e.at(root)?;
                let name = e.file_name();
                if !SUBDIRS.iter().any(|s| name == *s) {
                    return Err(Error::NotEmptyNotStore(root.to_path_buf()));
                }
            }
        }
        for d in SUBDIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).at(&p)?;
        }
        let objects = root.join("objects");
        for i in 0..=255u8 {
            let p = objects.join(format!("{i:02x}"));
            fs::create_dir_all(&p).at(&p)?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        meta::MetaDb::open(&store)?; // creates the database
        if !marker.exists() {
            let tmp = root.join("tmp").join(MARKER);
            fs::write(&tmp, format!("vzstore store format {FORMAT}\n")).at(&tmp)?;
            fsutil::sync_fs(root).at(root)?;
            fs::rename(&tmp, &marker).at(&marker)?;
            fsutil::sync_fs(root).at(root)?;
        }
        Ok(store)
    }

    /// Open an existing store; fails with [`Error::NotAStore`] if `init` never ran.
    /// The store's path is made canonical (mount points and messages use it).
    pub fn open(root: &Path) -> Result<Store> {
        let root = &match fs::canonicalize(root) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAStore(root.to_path_buf()));
            }
            Err(e) => return Err(e).at(root),
        };
        let marker = root.join(MARKER);
        let text = match fs::read_to_string(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotAStore(root.to_path_buf()));
            }
            Err(e) => return Err(e).at(&marker),
        };
        let found = text.trim().rsplit(' ').next().unwrap_or("").to_string();
        if found != FORMAT.to_string() {
            return Err(Error::Format {
                path: marker,
                found,
                expected: FORMAT,
            });
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<store>/objects`.
    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Where the object with this hash lives (whether or not it exists).
    pub fn object_path(&self, h: &Hash) -> PathBuf {
        let hex = h.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    /// `<store>/meta`, the metadata database.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    /// `<store>/tmp`, staging space on the store's file system.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<store>/locks/<name>.lock`.
    pub fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// `<store>/private`, the containers' own areas.
    pub fn private_dir(&self) -> PathBuf {
        self.root.join("private")
    }

    /// `<store>/root`, default mount points.
    pub fn mount_dir(&self) -> PathBuf {
        self.root.join("root")
    }
}
