//! Conversions between the store's inode attributes and fuser's types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

use crate::store::container::tree::{Attr, Time};
use crate::store::manifest::Kind;

/// fuser's file type for a manifest kind.
pub fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
    }
}

/// Manifest kind of the file type bits of a mode (`S_IFMT`).
pub fn kind_of_mode(mode: u32) -> Option<Kind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => Kind::File,
        libc::S_IFCHR => Kind::CharDev,
        libc::S_IFBLK => Kind::BlockDev,
        libc::S_IFIFO => Kind::Fifo,
        libc::S_IFSOCK => Kind::Socket,
        libc::S_IFDIR => Kind::Dir,
        _ => return None,
    })
}

/// SystemTime of a stored time (times before 1970 included).
pub fn system_time(t: Time) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec as u64)
    }
}

/// Stored time of a SystemTime.
pub fn from_system_time(t: SystemTime) -> Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Time {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            if d.subsec_nanos() == 0 {
                Time {
                    sec: -(d.as_secs() as i64),
                    nsec: 0,
                }
            } else {
                Time {
                    sec: -(d.as_secs() as i64) - 1,
                    nsec: 1_000_000_000 - d.subsec_nanos(),
                }
            }
        }
    }
}

/// `Some(None)` for "now", `Some(Some(t))` for a given time.
pub fn time_or_now(t: Option<TimeOrNow>) -> Option<Option<Time>> {
    t.map(|t| match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(s) => Some(from_system_time(s)),
    })
}

/// fuser's attributes for an inode.
pub fn file_attr(a: &Attr) -> FileAttr {
    let m = &a.meta;
    FileAttr {
        ino: INodeNo(a.ino),
        size: m.size,
        blocks: a.blocks,
        atime: system_time(m.atime),
        mtime: system_time(m.mtime),
        ctime: system_time(m.ctime),
        crtime: system_time(m.ctime),
        kind: file_type(m.kind),
        perm: (m.mode & 0o7777) as u16,
        nlink: m.nlink,
        uid: m.uid,
        gid: m.gid,
        rdev: m.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [
            Time { sec: 0, nsec: 0 },
            Time {
                sec: 1_700_000_000,
                nsec: 123,
            },
            Time {
                sec: -86_400,
                nsec: 5,
            },
            Time {
                sec: -1,
                nsec: 999_999_999,
            },
        ] {
            assert_eq!(from_system_time(system_time(t)), t);
        }
    }
}
