//! What no Linux file system can hold, refused at ingest: the limits on
//! names, paths, symlink targets and xattrs, and the shape of a POSIX ACL.

use crate::store::manifest::{Entry, Kind};

/// Linux's limits on a path and on one name in it (`PATH_MAX` counts the
/// terminating NUL).
pub(super) const PATH_MAX: usize = 4096;
pub(super) const NAME_MAX: usize = 255;
/// Linux's limits on one xattr value and on the list of an inode's names.
const XATTR_SIZE_MAX: usize = 65536;
const XATTR_LIST_MAX: usize = 65536;

/// What no Linux file system could hold: symlink targets with NUL or over
/// PATH_MAX, xattrs with empty, over-long or NUL-holding names, values over
/// 64 KiB, name lists over 64 KiB, and POSIX ACLs that are not ACLs.
pub(super) fn check_entry(e: &Entry) -> std::result::Result<(), String> {
    if e.kind == Kind::Symlink && (e.target.contains(&0) || e.target.len() >= PATH_MAX) {
        return Err("a symlink target with a NUL byte or longer than 4095 bytes".into());
    }
    let mut list = 0;
    for (n, v) in &e.xattrs {
        let name = String::from_utf8_lossy(n);
        if n.is_empty() || n.len() > NAME_MAX || n.contains(&0) {
            return Err(format!(
                "an xattr name {name:?} that is empty, holds NUL or is over {NAME_MAX} bytes"
            ));
        }
        if v.len() > XATTR_SIZE_MAX {
            return Err(format!(
                "xattr {name}: a value of {} bytes (at most {XATTR_SIZE_MAX})",
                v.len()
            ));
        }
        list += n.len() + 1;
        if (n == b"system.posix_acl_access" || n == b"system.posix_acl_default") && !acl_ok(v) {
            return Err(format!("xattr {name}: not a POSIX ACL"));
        }
    }
    if list > XATTR_LIST_MAX {
        return Err(format!(
            "xattr names of {list} bytes in all (at most {XATTR_LIST_MAX})"
        ));
    }
    Ok(())
}

/// The kernel's binary ACL: version 2, then 8-byte entries of known tags.
fn acl_ok(v: &[u8]) -> bool {
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) || v[..4] != 2u32.to_le_bytes() {
        return false;
    }
    v[4..].chunks(8).all(|e| {
        matches!(
            u16::from_le_bytes([e[0], e[1]]),
            1 | 2 | 4 | 8 | 0x10 | 0x20
        )
    })
}
