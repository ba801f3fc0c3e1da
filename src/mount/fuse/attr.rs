//! Conversions between a container's inode types and fuser's.

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

use crate::container::inode::{Stat, Time, TimeSet};
use crate::store::manifest::Kind;

/// fuser's file type for a manifest kind.
pub(crate) fn file_type(k: Kind) -> FileType {
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

/// A stored time from fuser's "time or now".
pub(crate) fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(s) => TimeSet::At(Time::from_system(s)),
    })
}

/// fuser's attributes for an inode.
pub(crate) fn file_attr(s: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(s.ino),
        size: s.size,
        blocks: s.blocks,
        atime: s.atime.to_system(),
        mtime: s.mtime.to_system(),
        ctime: s.ctime.to_system(),
        crtime: s.ctime.to_system(),
        kind: file_type(s.kind),
        perm: (s.mode & 0o7777) as u16,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: s.rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}
