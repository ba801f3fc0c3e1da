//! Typed errors of the store core.
//!
//! Rules: the message of a wrapped OS or database error is part of the variant's
//! own message (not a separate `source`), so it is printed once; every error that comes from the file system names the path it concerns
//! (use [`IoContext::at`]); errors that come from user input name the input and the
//! reason; nothing here is `anyhow`, so callers (the CLI, the FUSE adapter) can match.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::hash::Hash;

/// Result alias for the store core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on `path` failed.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    /// The directory holds no store (`vzstore init` not run).
    #[error("{} is not a vzstore store (run `vzstore init` first)", .0.display())]
    NotAStore(PathBuf),
    /// The store path names something that is not a directory.
    #[error("{}: this is a file, not a store directory (--store or VZSTORE_ROOT must name a directory)", .0.display())]
    StoreNotDir(PathBuf),
    /// `init` was asked to take over a directory that holds something else.
    #[error("{} is not empty and is not a vzstore store; refusing to use it", .0.display())]
    NotEmptyNotStore(PathBuf),
    /// The store was written by an incompatible version.
    #[error("{}: store format {found} is not supported (this vzstore reads format {expected})", path.display())]
    Format {
        path: PathBuf,
        found: String,
        expected: u32,
    },
    /// A template or container name that is not allowed.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// No template with that name (and version).
    #[error("template {0} not found")]
    TemplateNotFound(String),
    /// A source that cannot be ingested as it is.
    #[error("{}: {reason}", path.display())]
    BadSource { path: PathBuf, reason: String },
    /// A source file changed while it was read; nothing of it was recorded.
    #[error("{}: file changed while it was being ingested ({what}); ingest aborted, retry when the source is quiet", path.display())]
    Changed { path: PathBuf, what: &'static str },
    /// An export or mount destination that is not usable.
    #[error("{}: {reason}", path.display())]
    BadDestination { path: PathBuf, reason: &'static str },
    /// An object named by a manifest is not in the store.
    #[error("object {0} is missing from the store")]
    MissingObject(Hash),
    /// An object's bytes do not hash to its name.
    #[error("object {0} is corrupt (its content does not hash to its name)")]
    CorruptObject(Hash),
    /// An object's size is not the size its manifest records (truncated, or
    /// grown).
    #[error("object {hash} is damaged: {found} bytes instead of {expected}")]
    ObjectSize {
        hash: Hash,
        expected: u64,
        found: u64,
    },
    /// The metadata database failed.
    #[error("metadata database {}: {err}", path.display())]
    Db { path: PathBuf, err: rocksdb::Error },
    /// A metadata record could not be decoded.
    #[error("corrupt metadata record {key}: {reason}")]
    CorruptRecord { key: String, reason: String },
    /// No container of that name.
    #[error("container {0} does not exist")]
    ContainerNotFound(String),
    /// A container of that name exists already.
    #[error("container {0} already exists")]
    ContainerExists(String),
    /// A template version of that name and number exists already.
    #[error("template {0} already exists here")]
    TemplateExists(String),
    /// A remote cannot be removed while lazily pulled templates need it.
    #[error(
        "remote {remote} is still needed by templates pulled lazily from it: {templates} (pull them whole, or remove them, first)"
    )]
    RemoteInUse { remote: String, templates: String },
    /// A template pulled lazily lacks objects that this operation needs.
    #[error(
        "template {template} was pulled lazily from remote {remote} and not all its objects are here; {what} needs them all: run `vzstore pull {template} {remote}` first"
    )]
    LazyTemplate {
        template: String,
        remote: String,
        what: &'static str,
    },
    /// A command named the same container twice.
    #[error("container {0} is named twice")]
    DuplicateName(String),
    /// The container is mounted and the operation needs it unmounted.
    #[error("container {0} is mounted; unmount it first or use --force")]
    Mounted(String),
    /// The container is mounted and the operation is not done on mounted ones.
    #[error(
        "container {container} is mounted; {what} needs it unmounted (vzstore umount {container})"
    )]
    MountedRefused {
        container: String,
        what: &'static str,
    },
    /// A second mount of a mounted container.
    #[error("container {0} is already mounted")]
    AlreadyMounted(String),
    /// Unmount of a container that is not mounted.
    #[error("container {0} is not mounted")]
    NotMounted(String),
    /// A template version still used by containers.
    #[error(
        "template {template} is used by container {containers}; destroy those containers first"
    )]
    TemplateInUse {
        template: String,
        containers: String,
    },
    /// `templates rm NAME` of a name with several versions.
    #[error("template {name} has {count} versions ({versions}); name one as NAME@V, or pass --all")]
    AmbiguousTemplate {
        name: String,
        count: usize,
        versions: String,
    },
    /// A template version that the kernel backend cannot serve.
    #[error("template {template} has no kernel image: {err}")]
    Image {
        template: String,
        err: crate::store::image::ImageError,
    },
    /// The mount daemon failed before it was ready.
    #[error("mounting container {container} failed: {reason}")]
    MountFailed { container: String, reason: String },
    /// The kernel refused to unmount.
    #[error("umount {}: {reason}", path.display())]
    UmountFailed { path: PathBuf, reason: String },
    /// The mount daemon did not finish in time.
    #[error("the mount daemon of {container} did not exit within {seconds} s")]
    DaemonTimeout { container: String, seconds: u64 },
    /// The mount daemon could not save the container's state when it stopped.
    #[error(
        "container {container}: saving its state at unmount failed: {reason}; the state saved before stays in place"
    )]
    SaveFailed { container: String, reason: String },
}

/// Attach a path to an I/O error.
pub trait IoContext<T> {
    /// Map the error to [`Error::Io`] naming `path`.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|err| Error::Io {
            path: path.as_ref().to_path_buf(),
            err,
        })
    }
}

impl<T> IoContext<T> for std::result::Result<T, rustix::io::Errno> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::Io {
            path: path.as_ref().to_path_buf(),
            err: e.into(),
        })
    }
}

impl Error {
    /// The underlying OS error number, if this error came from a system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}
