//! The FUSE adapter: serves a container's [`Tree`] through fuser. Thin by design:
//! each callback calls a helper returning [`FsResult`], then replies or maps the
//! error through [`errno::to_errno`]. All file-system semantics live in
//! `store::container::tree`.

pub mod attr;
pub mod daemon;
pub mod errno;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use fuser::{
    AccessFlags, BackingId, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::store::container::error::{FsError, FsResult};
use crate::store::container::tree::{
    Attr, Caller, DirEntry, NewNode, RenameMode, SetAttr, Tree, XattrMode,
};
use crate::store::manifest::Kind;

/// How long the kernel may cache entries and attributes. Finite, but long: this
/// daemon is the only writer of the tree, every change goes through this mount
/// (so the kernel updates or drops what it cached), and each reply carries fresh
/// attributes. Nothing changes a container's tree behind the kernel's back.
const TTL: Duration = Duration::from_secs(60);

/// An open handle. Files keep their passthrough backing id alive (the kernel
/// reads and writes the backing file directly); without passthrough, reads and
/// writes go through the inode, so a copy-up by another handle is seen at once.
/// Directories keep the listing taken at opendir so readdir offsets stay stable.
enum Handle {
    File {
        #[allow(dead_code)] // held only to keep the kernel's backing file open
        backing: Option<Arc<BackingId>>,
    },
    Dir {
        entries: Vec<DirEntry>,
    },
}

/// FUSE passthrough state: one backing id per (inode, private?) while any handle
/// of it is open, as the kernel requires.
#[derive(Default)]
struct Passthrough {
    enabled: AtomicBool,
    by_inode: Mutex<HashMap<(u64, bool), Weak<BackingId>>>,
}

/// A container root served over FUSE.
pub struct VzFs {
    tree: Arc<Mutex<Tree>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    passthrough: Passthrough,
    want_passthrough: bool,
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn reply_entry(reply: ReplyEntry, r: FsResult<Attr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno::to_errno(&e)),
    }
}

fn reply_empty(reply: ReplyEmpty, r: FsResult<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno::to_errno(&e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, r: FsResult<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno::to_errno(&e)),
    }
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

    /// The backing id for an open of `ino`: a live one of the inode if there is
    /// one, else its backing file registered with the kernel. `None` when
    /// passthrough is off; the first failure turns it off for the mount (logged
    /// once) and reads are served by the daemon. (Keeping ids of shared objects
    /// registered after their last close was tried: it saved nothing measurable,
    /// the OPEN round trip itself is the cost.)
    fn backing_for(
        &self,
        ino: u64,
        private: bool,
        open_backing: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> FsResult<Option<Arc<BackingId>>> {
        if !self.passthrough.enabled.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let pt = &self.passthrough;
        let mut map = pt.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = map.get(&(ino, private)).and_then(Weak::upgrade) {
            return Ok(Some(id));
        }
        let file = self.tree().backing(ino)?;
        match open_backing(&file) {
            Ok(id) => {
                let id = Arc::new(id);
                if map.len() > 1024 {
                    map.retain(|_, w| w.strong_count() > 0);
                }
                map.insert((ino, private), Arc::downgrade(&id));
                Ok(Some(id))
            }
            Err(e) => {
                pt.enabled.store(false, Ordering::Relaxed);
                log::warn!(
                    "FUSE passthrough failed ({e}); reads and writes are served by the daemon from now on"
                );
                Ok(None)
            }
        }
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
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

    /// Open a file; returns whether its content is the container's own.
    fn do_open(&self, ino: u64, flags: OpenFlags) -> FsResult<bool> {
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let trunc = flags.0 & libc::O_TRUNC != 0;
        self.tree().open(ino, write, trunc)
    }

    fn do_read(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let f = self.tree().backing(ino)?;
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

    fn do_write(&self, ino: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let f = self.tree().writable(ino)?;
        f.write_all_at(data, offset)?;
        self.tree().wrote(ino, offset + data.len() as u64)?;
        Ok(data.len() as u32)
    }

    fn do_create(&self, req: &Request, parent: u64, name: &OsStr, mode: u32) -> FsResult<Attr> {
        let mut t = self.tree();
        let new = NewNode::new(Kind::File, mode);
        let a = t.make_node(parent, name.as_bytes(), new, caller(req))?;
        t.open(a.ino, true, false)?;
        Ok(a)
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<std::time::SystemTime>,
    ) -> FsResult<Attr> {
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: attr::time_or_now(atime),
            mtime: attr::time_or_now(mtime),
            ctime: ctime.map(attr::from_system_time),
        };
        self.tree().setattr(ino, s)
    }

    fn do_opendir(&self, ino: u64) -> FsResult<u64> {
        let entries = self.tree().readdir(ino)?;
        Ok(self.new_handle(Handle::Dir { entries }))
    }

    fn dir_entries(&self, fh: u64, offset: u64) -> FsResult<Vec<(u64, DirEntry)>> {
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

    fn do_lseek(&self, ino: u64, offset: i64, whence: i32) -> FsResult<i64> {
        use rustix::fs::SeekFrom;
        let f = self.tree().backing(ino)?;
        let off = u64::try_from(offset).map_err(|_| FsError::Invalid)?;
        let pos = match whence {
            libc::SEEK_DATA => SeekFrom::Data(off),
            libc::SEEK_HOLE => SeekFrom::Hole(off),
            libc::SEEK_SET => return Ok(offset),
            _ => return Err(FsError::Invalid),
        };
        Ok(rustix::fs::seek(&*f, pos)? as i64)
    }

    fn do_fallocate(&self, ino: u64, offset: u64, length: u64, mode: i32) -> FsResult<()> {
        let f = self.tree().writable(ino)?;
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as u32);
        rustix::fs::fallocate(&*f, flags, offset, length)?;
        let end = f.metadata()?.len();
        self.tree().wrote(ino, end)
    }

    fn do_statfs(&self) -> FsResult<rustix::fs::StatVfs> {
        let root = self.tree().store().root().to_path_buf();
        Ok(rustix::fs::statvfs(&root)?)
    }
}

impl Filesystem for VzFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DO_READDIRPLUS);
        // Symlink targets only change through this mount: let the kernel keep them.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_CACHE_SYMLINKS);
        // Passthrough: the kernel reads (and mmaps) the objects themselves, so every
        // container shares their page cache. Needs Linux 6.9+ and CAP_SYS_ADMIN.
        if !self.want_passthrough {
            log::info!("FUSE passthrough not requested; reads are served by the daemon");
            return Ok(());
        }
        let on = config
            .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
            .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        self.passthrough.enabled.store(on, Ordering::Relaxed);
        if on {
            log::info!("FUSE passthrough enabled");
        } else {
            log::warn!(
                "the kernel does not offer FUSE passthrough; reads are served by the daemon"
            );
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if let Err(e) = self.tree().compact() {
            log::error!("saving container state at unmount: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.tree().lookup(parent.0, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.tree().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &attr::file_attr(&a)),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino.0, mode, uid, gid, size, atime, mtime, ctime) {
            Ok(a) => reply.attr(&TTL, &attr::file_attr(&a)),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.tree().readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = match attr::kind_of_mode(mode) {
            Some(Kind::Dir) | None => Err(FsError::Invalid),
            Some(kind) => self.tree().make_node(
                parent.0,
                name.as_bytes(),
                NewNode {
                    rdev: rdev as u64,
                    ..NewNode::new(kind, mode)
                },
                caller(req),
            ),
        };
        reply_entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.tree().make_node(
            parent.0,
            name.as_bytes(),
            NewNode::new(Kind::Dir, mode),
            caller(req),
        );
        reply_entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.tree().unlink(parent.0, name.as_bytes()));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.tree().rmdir(parent.0, name.as_bytes()));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let t = target.as_os_str().as_bytes().to_vec();
        let r = self.tree().make_node(
            parent.0,
            link_name.as_bytes(),
            NewNode {
                target: Some(t),
                ..NewNode::new(Kind::Symlink, 0o777)
            },
            caller(req),
        );
        reply_entry(reply, r);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else {
            RenameMode::Replace
        };
        let r = self.tree().rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            mode,
        );
        reply_empty(reply, r);
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.tree().link(ino.0, newparent.0, newname.as_bytes()),
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let private = match self.do_open(ino.0, flags) {
            Ok(p) => p,
            Err(e) => return reply.error(errno::to_errno(&e)),
        };
        let backing = match self.backing_for(ino.0, private, |f| reply.open_backing(f)) {
            Ok(b) => b,
            Err(e) => {
                let _ = self.tree().release(ino.0); // the kernel will not release it
                return reply.error(errno::to_errno(&e));
            }
        };
        let fh = FileHandle(self.new_handle(Handle::File {
            backing: backing.clone(),
        }));
        // Without passthrough, a read-only open may keep the kernel's page cache:
        // content only changes through this mount (or by a copy-up, which is a
        // writable open, and that one drops the cache).
        // A read-only handle has nothing to flush: skip the FLUSH round trip on
        // every close (tar, cat and python's imports open thousands of files).
        let (keep, noflush) = if matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) {
            (FopenFlags::FOPEN_KEEP_CACHE, FopenFlags::FOPEN_NOFLUSH)
        } else {
            (FopenFlags::empty(), FopenFlags::empty())
        };
        match backing {
            Some(id) => reply.opened_passthrough(fh, noflush, &id),
            None => reply.opened(fh, keep | noflush),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(ino.0, offset, size) {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.tree().flush_attrs(Some(ino.0)));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles().remove(&fh.0);
        reply_empty(reply, self.tree().release(ino.0));
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.tree().fsync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino.0) {
            Ok(fh) => reply.opened(
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.dir_entries(fh.0, offset) {
            Ok(list) => {
                for (next, e) in list {
                    if reply.add(
                        INodeNo(e.ino),
                        next,
                        attr::file_type(e.kind),
                        OsStr::from_bytes(&e.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let list = match self.dir_entries(fh.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno::to_errno(&e)),
        };
        let mut t = self.tree();
        for (next, e) in list {
            let Ok(a) = t.attr(e.ino) else { continue };
            let fa = attr::file_attr(&a);
            if reply.add(
                INodeNo(e.ino),
                next,
                OsStr::from_bytes(&e.name),
                &TTL,
                &fa,
                Generation(0),
            ) {
                break;
            }
            // The kernel takes a lookup reference for every entry but . and ..
            if e.name != b"." && e.name != b".." {
                t.add_lookup(e.ino);
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.tree().sync());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.do_statfs() {
            Ok(s) => {
                let files = self.tree().inode_count();
                reply.statfs(
                    s.f_blocks,
                    s.f_bfree,
                    s.f_bavail,
                    files + s.f_ffree,
                    s.f_ffree,
                    s.f_bsize as u32,
                    255,
                    s.f_frsize as u32,
                )
            }
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::Create
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::Replace
        } else {
            XattrMode::Any
        };
        reply_empty(
            reply,
            self.tree().setxattr(ino.0, name.as_bytes(), value, mode),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.tree().getxattr(ino.0, name.as_bytes()));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, size, self.tree().listxattr(ino.0));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.tree().removexattr(ino.0, name.as_bytes()));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks permissions itself.
        reply_empty(reply, self.tree().attr(ino.0).map(|_| ()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let a = match self.do_create(req, parent.0, name, mode) {
            Ok(a) => a,
            Err(e) => return reply.error(errno::to_errno(&e)),
        };
        let backing = match self.backing_for(a.ino, true, |f| reply.open_backing(f)) {
            Ok(b) => b,
            Err(e) => {
                let mut t = self.tree();
                let _ = t.release(a.ino);
                t.forget(a.ino, 1); // the kernel never saw the entry
                return reply.error(errno::to_errno(&e));
            }
        };
        let fh = FileHandle(self.new_handle(Handle::File {
            backing: backing.clone(),
        }));
        let fa = attr::file_attr(&a);
        match backing {
            Some(id) => {
                reply.created_passthrough(&TTL, &fa, Generation(0), fh, FopenFlags::empty(), &id)
            }
            None => reply.created(&TTL, &fa, Generation(0), fh, FopenFlags::empty()),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.do_fallocate(ino.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.do_lseek(ino.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno::to_errno(&e)),
        }
    }
}
