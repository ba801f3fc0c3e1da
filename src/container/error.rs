//! Errors of container file-system operations. Each variant is one POSIX error,
//! numbered by [`FsError::errno`] (the FUSE adapter reports it as is).

use std::io;

/// A failed file-system operation on a container tree.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument")]
    Invalid,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("no such attribute")]
    NoAttr,
    #[error("result does not fit the buffer")]
    Range,
    #[error("file name too long")]
    NameTooLong,
    #[error("too many links")]
    TooManyLinks,
    #[error("operation not supported")]
    NotSupported,
    #[error("stale file handle")]
    Stale,
    /// The file is in a use that forbids the change now (ETXTBSY).
    #[error("file busy")]
    Busy,
    /// A system call on the container's backing files failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The store underneath failed (missing object, database...).
    #[error("{0}")]
    Store(#[from] crate::store::Error),
}

impl From<rustix::io::Errno> for FsError {
    fn from(e: rustix::io::Errno) -> FsError {
        FsError::Io(e.into())
    }
}

impl FsError {
    /// The POSIX error number of this error (EIO for a store or I/O failure that
    /// carries none). The FUSE adapter's `to_errno` and the model tests use it.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid => libc::EINVAL,
            FsError::NotPermitted => libc::EPERM,
            FsError::NoAttr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::Stale => libc::ESTALE,
            FsError::Busy => libc::ETXTBSY,
            FsError::Io(io) => io.raw_os_error().unwrap_or(libc::EIO),
            FsError::Store(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

/// Result of a container file-system operation.
pub type FsResult<T> = std::result::Result<T, FsError>;
