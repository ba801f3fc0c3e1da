//! Container file-system errors as the kernel sees them (the mapping itself is
//! [`FsError::errno`]).

use fuser::Errno;

use crate::container::error::FsError;

/// The errno the kernel should see for `e`. Never ENOSYS (the kernel would cache
/// it as "operation not supported" for the mount's life).
pub(crate) fn to_errno(e: &FsError) -> Errno {
    let code = e.errno();
    if code == libc::ENOSYS {
        return Errno::from_i32(libc::EIO);
    }
    Errno::from_i32(code)
}
