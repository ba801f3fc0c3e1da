//! The one mapping from container file-system errors to errno values.

use fuser::Errno;

use crate::container::error::FsError;

/// The errno the kernel should see for `e`. Never ENOSYS (the kernel would cache
/// it as "operation not supported" for the mount's life).
pub(crate) fn to_errno(e: &FsError) -> Errno {
    let code = match e {
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
    };
    if code == libc::ENOSYS {
        return Errno::from_i32(libc::EIO);
    }
    Errno::from_i32(code)
}
