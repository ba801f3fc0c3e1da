//! The store core: a directory holding content-addressed objects, a metadata
//! database (the catalog) and per-container areas. Never imports `fuser` or
//! `clap`, nor the layers above it (ingest, container, mount, daemon).
//!
//! Layout of a store directory (see ARCHITECTURE.md):
//!
//! ```text
//! <store>/                     0700, and so is every sub-directory
//! <store>/vzstore-store        marker and format version
//! <store>/objects/ab/cdef...   0700; immutable blobs named by blake3, mode 0444
//! <store>/meta/                0700; RocksDB: templates, manifests, containers
//! <store>/locks/               0700; flock files serialising writers (meta, gc)
//! <store>/tmp/                 0700; staging, ingest sessions, gc trash
//! <store>/private/<CT>/        0700; a container's own data (files 0600)
//! <store>/root/<CT>/           default mount points (root/ is 0700: mounts carry suid)
//! <store>/verified[.log]       objects checked on open (see `integrity`)
//! ```
//!
//! Only the store's owner (root) reads objects, private data or the catalog (a
//! template's `/etc/shadow` is an object too) or reaches a mounted root (whose
//! setuid programs would otherwise be a way to root for any host user). Inside
//! a container (chroot, namespaces), the mount serves each file by the
//! container's own permissions.

pub mod catalog;
pub mod error;
pub mod export;
pub mod fetch;
pub mod fstree;
pub mod fsutil;
pub mod gc;
pub mod hash;
pub mod image;
pub mod integrity;
pub(crate) mod lock;
pub mod manifest;
pub mod name;
pub mod objects;
pub mod reap;
pub mod records;
pub mod report;
pub(crate) mod session;
#[allow(unsafe_code)] // the one audited home of `unsafe`
pub(crate) mod sys;
pub use sys::restore_default_sigpipe;
pub mod template;
pub mod time;
pub mod verify;

use std::fs;
use std::path::{Path, PathBuf};

pub use error::{Error, IoContext, Result};
pub use hash::Hash;

/// Name of the marker file that makes a directory a store.
pub const MARKER: &str = "vzstore-store";
/// Store format version written by this build.
pub const FORMAT: u32 = 1;

const SUBDIRS: [&str; 7] = [
    "objects", "meta", "locks", "tmp", "private", "root", "images",
];

/// Mode of the store directory and of every sub-directory: only the store's
/// owner enters. That includes `root/`, the default mount points: mounts carry
/// `suid` (containers need their setuid programs), so a host user who could reach
/// one could run a container's setuid-root program. Container processes reach
/// their root by chroot or a mount namespace, never through the store.
const DIR_MODE: u32 = 0o700;

/// Files at the top of the store that only its owner may read or write.
const PRIVATE_FILES: [&str; 2] = ["verified", "verified.log"];

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
        if fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::StoreNotDir(root.to_path_buf()));
        }
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
        set_mode(root, DIR_MODE)?;
        for d in SUBDIRS {
            let p = root.join(d);
            fs::create_dir_all(&p).at(&p)?;
            set_mode(&p, DIR_MODE)?;
        }
        let objects = root.join("objects");
        for i in 0..=255u8 {
            let p = objects.join(format!("{i:02x}"));
            fs::create_dir_all(&p).at(&p)?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        catalog::Catalog::open(&store)?; // creates the database
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
        if fs::metadata(root).is_ok_and(|m| !m.is_dir()) {
            return Err(Error::StoreNotDir(root.to_path_buf()));
        }
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

    /// Bring the modes of the store directory and its sub-directories to what
    /// this version sets (stores made by earlier versions were readable by every
    /// host user). Returns the directories that were changed. Writing commands
    /// call it; read-only ones leave the store as it is.
    pub fn tighten(&self) -> Result<Vec<PathBuf>> {
        use std::os::unix::fs::PermissionsExt;
        let mut changed = Vec::new();
        let dirs = std::iter::once((self.root.clone(), DIR_MODE))
            .chain(SUBDIRS.iter().map(|d| (self.root.join(d), DIR_MODE)))
            .chain(PRIVATE_FILES.iter().map(|f| (self.root.join(f), 0o600)));
        for (p, mode) in dirs {
            let m = match fs::metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&p),
            };
            if m.permissions().mode() & 0o777 & !mode != 0 {
                set_mode(&p, mode)?;
                changed.push(p);
            }
        }
        Ok(changed)
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

    /// `<store>/private/<name>`, one container's own area.
    pub fn container_dir(&self, name: &str) -> PathBuf {
        self.private_dir().join(name)
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

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).at(p)
}
