//! The FUSE file system's state and its request helpers: each returns an
//! [`FsResult`] so that the callbacks in `mod.rs` are one call and one reply.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::{BackingId, OpenAccMode, OpenFlags, Request};

use super::passthrough::Passthrough;
use crate::container::error::{FsError, FsResult};
use crate::container::inode::{Caller, DirEntry, Ino, NewNode, OpenMode, SetAttr, Stat};
use crate::container::tree::Tree;
use crate::container::tree::content::{self, CopyUp};
use crate::store::manifest::Kind;

/// How long (in 5 ms steps) a write open waits for read-only handles that were
/// just closed to be released before it is refused.
const RELEASE_WAIT_STEPS: u32 = 40;

/// An open handle. Files keep their passthrough backing id alive (the kernel
/// reads and writes the backing file directly); without passthrough, reads and
/// writes go through the inode, so a copy-up by another handle is seen at once.
/// Directories keep the listing taken at opendir so readdir offsets stay stable.
pub(crate) enum Handle {
    File {
        #[allow(dead_code)] // held only to keep the kernel's backing file open
        backing: Option<Arc<BackingId>>,
    },
    Dir {
        entries: Vec<DirEntry>,
    },
}

/// A container root served over FUSE.
pub struct VzFs {
    pub(crate) tree: Arc<Mutex<Tree>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    pub(crate) passthrough: Passthrough,
    pub(crate) want_passthrough: bool,
}

/// The owner of new inodes.
pub(crate) fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// How the kernel's open flags open a file.
pub(crate) fn open_mode(flags: OpenFlags) -> OpenMode {
    match flags.acc_mode() {
        OpenAccMode::O_RDONLY => OpenMode::Read,
        _ if flags.0 & libc::O_TRUNC != 0 => OpenMode::WriteTruncate,
        _ => OpenMode::Write,
    }
}

/// What an open or create hands to the reply.
pub(crate) struct OpenReply {
    pub(crate) fh: u64,
    pub(crate) backing: Option<Arc<BackingId>>,
}

impl VzFs {
    /// Serve `tree`; `passthrough` asks for FUSE passthrough (used when the
    /// kernel grants it at init).
    pub fn new(tree: Arc<Mutex<Tree>>, passthrough: bool) -> VzFs {
        VzFs {
            tree,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            passthrough: Passthrough::default(),
            want_passthrough: passthrough,
        }
    }

    pub(crate) fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    pub(crate) fn drop_handle(&self, fh: u64) {
        self.handles().remove(&fh);
    }

    /// Open a file and make its handle; `register` turns the backing file into
    /// a passthrough id. The open is released again if anything after it fails
    /// (the kernel will not release a handle it never got).
    pub(crate) fn do_open(
        &self,
        ino: Ino,
        mode: OpenMode,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> FsResult<OpenReply> {
        if mode != OpenMode::Read {
            self.check_copy_up(ino)?;
        }
        let opened = content::open(&self.tree, ino, mode)?;
        let backing = self
            .passthrough
            .backing_id(ino, opened.private, &opened.file, register);
        let fh = self.new_handle(Handle::File {
            backing: backing.clone(),
        });
        Ok(OpenReply { fh, backing })
    }

    /// Create and open a new regular file.
    pub(crate) fn do_create(
        &self,
        req: &Request,
        parent: Ino,
        name: &[u8],
        mode: u32,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> FsResult<(Stat, OpenReply)> {
        let st =
            self.tree()
                .make_node(parent, name, NewNode::new(Kind::File, mode), caller(req))?;
        match self.do_open(st.ino, OpenMode::Write, register) {
            Ok(r) => Ok((st, r)),
            Err(e) => {
                self.tree().forget(st.ino, 1); // the kernel never saw the entry
                Err(e)
            }
        }
    }

    /// Refuse to copy `ino` up while read-only handles hold its object as their
    /// passthrough backing (see `passthrough`). A handle closed just before is
    /// released asynchronously (the kernel sends RELEASE after close returns),
    /// so wait a moment for those first.
    fn check_copy_up(&self, ino: Ino) -> FsResult<()> {
        for _ in 0..RELEASE_WAIT_STEPS {
            if !self.passthrough.object_backing_live(ino) || self.tree().is_private(ino)? {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        log::info!("inode {ino}: write open refused while read-only passthrough handles are open");
        Err(FsError::Busy)
    }

    pub(crate) fn do_read(&self, ino: Ino, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let f = content::backing(&self.tree, ino)?;
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            let n = f.read_at(&mut buf[got..], offset + got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    pub(crate) fn do_write(&self, ino: Ino, offset: u64, data: &[u8]) -> FsResult<u32> {
        content::make_private(&self.tree, ino, CopyUp::Content)?;
        let f = content::backing(&self.tree, ino)?;
        f.write_all_at(data, offset)?;
        self.tree().wrote(ino, offset + data.len() as u64)?;
        Ok(data.len() as u32)
    }

    /// setattr: a size change copies a shared file up first (outside the lock).
    pub(crate) fn do_setattr(&self, ino: Ino, s: SetAttr) -> FsResult<Stat> {
        if let Some(size) = s.size
            && self.tree().stat(ino)?.kind == Kind::File
        {
            self.check_copy_up(ino)?;
            let how = if size == 0 {
                CopyUp::Empty
            } else {
                CopyUp::Content
            };
            content::make_private(&self.tree, ino, how)?;
        }
        self.tree().setattr(ino, s)
    }

    pub(crate) fn do_opendir(&self, ino: Ino) -> FsResult<u64> {
        let entries = self.tree().readdir(ino)?;
        Ok(self.new_handle(Handle::Dir { entries }))
    }

    /// The entries of an open directory from `offset` on, each with the offset
    /// of the entry after it.
    pub(crate) fn dir_entries(&self, fh: u64, offset: u64) -> FsResult<Vec<(u64, DirEntry)>> {
        match self.handles().get(&fh) {
            Some(Handle::Dir { entries }) => Ok(entries
                .iter()
                .enumerate()
                .skip(offset as usize)
                .map(|(i, e)| (i as u64 + 1, e.clone()))
                .collect()),
            _ => Err(FsError::Invalid),
        }
    }

    pub(crate) fn do_lseek(&self, ino: Ino, offset: i64, whence: i32) -> FsResult<i64> {
        use rustix::fs::SeekFrom;
        let f = content::backing(&self.tree, ino)?;
        let off = u64::try_from(offset).map_err(|_| FsError::Invalid)?;
        let pos = match whence {
            libc::SEEK_DATA => SeekFrom::Data(off),
            libc::SEEK_HOLE => SeekFrom::Hole(off),
            libc::SEEK_SET => return Ok(offset),
            _ => return Err(FsError::Invalid),
        };
        Ok(rustix::fs::seek(&*f, pos)? as i64)
    }

    pub(crate) fn do_fallocate(
        &self,
        ino: Ino,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> FsResult<()> {
        self.check_copy_up(ino)?;
        content::make_private(&self.tree, ino, CopyUp::Content)?;
        let f = content::backing(&self.tree, ino)?;
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as u32);
        rustix::fs::fallocate(&*f, flags, offset, length)?;
        let end = f.metadata()?.len();
        self.tree().wrote(ino, end)
    }

    pub(crate) fn do_statfs(&self) -> FsResult<(rustix::fs::StatVfs, u64)> {
        let t = self.tree();
        let s = rustix::fs::statvfs(t.store().root())?;
        Ok((s, t.inode_count()))
    }
}
