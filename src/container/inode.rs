//! The types of a container's inodes: what the tree stores per inode, what it
//! reports, and the requests that change it. Shared by the tree, its table, its
//! journal and the mount adapters; depends on nothing else of the container.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::hash::Hash;
use crate::store::manifest::Kind;
pub use crate::store::time::Time;

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT: Ino = 1;
/// Longest file name accepted.
pub const NAME_MAX: usize = 255;
/// Most hard links one inode may have.
pub const LINK_MAX: u32 = 65_000;

/// Where a file's content is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// Not a regular file or symlink.
    None,
    /// A store object, shared with the template and other containers.
    Shared(Hash),
    /// The container's own file, `data/<ino>`.
    Private,
    /// Symlink target.
    Symlink(Vec<u8>),
}

/// Everything the tree keeps about an inode except a directory's entries. This
/// is what the journal records (its field order is part of the journal format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InodeAttrs {
    pub kind: Kind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub rdev: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub content: Content,
    /// For directories: the parent directory (the root is its own parent).
    pub parent: Ino,
}

/// The attributes reported for an inode (`stat`), by value: no xattrs, no
/// symlink target, nothing that allocates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte blocks, as `stat` reports.
    pub blocks: u64,
    pub nlink: u32,
    pub rdev: u64,
    pub atime: Time,
    pub mtime: Time,
    pub ctime: Time,
}

impl Stat {
    /// The stat fields of `a` (blocks estimated from the size).
    pub fn of(ino: Ino, a: &InodeAttrs) -> Stat {
        Stat {
            ino,
            kind: a.kind,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            blocks: a.size.div_ceil(512),
            nlink: a.nlink,
            rdev: a.rdev,
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
        }
    }
}

/// One inode of a live tree: its attributes, entries and runtime counts.
pub(crate) struct Node {
    pub(crate) attrs: InodeAttrs,
    pub(crate) children: BTreeMap<Vec<u8>, Ino>,
    /// FUSE lookup references.
    pub(crate) lookups: u64,
    /// Open handles.
    pub(crate) opens: u32,
    /// The open backing file while handles are open.
    pub(crate) backing: Option<Arc<File>>,
    /// Size or times changed by writes and not journaled yet.
    pub(crate) attr_dirty: bool,
}

impl Node {
    pub(crate) fn new(attrs: InodeAttrs) -> Node {
        Node {
            attrs,
            children: BTreeMap::new(),
            lookups: 0,
            opens: 0,
            backing: None,
            attr_dirty: false,
        }
    }
}

/// A time to set: the caller's or the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSet {
    Now,
    At(Time),
}

/// Changes requested by `setattr`.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub ctime: Option<Time>,
}

/// Who asks, for the owner of new inodes.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// What to create with `Tree::make_node`.
#[derive(Clone, Debug)]
pub struct NewNode {
    pub kind: Kind,
    /// Permission bits (the file type comes from `kind`).
    pub mode: u32,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Target for symlinks.
    pub target: Option<Vec<u8>>,
}

impl NewNode {
    /// A node of `kind` with `mode` and nothing else.
    pub fn new(kind: Kind, mode: u32) -> NewNode {
        NewNode {
            kind,
            mode,
            rdev: 0,
            target: None,
        }
    }
}

/// How a regular file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only: the content stays where it is.
    Read,
    /// For writing: a shared file is copied up first.
    Write,
    /// For writing with O_TRUNC: a shared file is replaced by an empty private one.
    WriteTruncate,
}

/// How `rename` behaves when the target exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    Replace,
    NoReplace,
    Exchange,
}

/// How `setxattr` behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrMode {
    Any,
    Create,
    Replace,
}

/// One directory entry as listed.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: Kind,
}
