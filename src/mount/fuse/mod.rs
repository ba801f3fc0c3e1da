//! The FUSE adapter: serves a container's [`Tree`](crate::container::tree::Tree)
//! through fuser. Thin by design: each callback calls one helper (in [`ops`])
//! returning `FsResult`, then replies or maps the error through
//! [`errno::to_errno`], the one errno mapping. All file-system semantics live in
//! `container::tree`.

mod attr;
mod errno;
mod ops;
mod passthrough;
pub mod serve;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::container::error::{FsError, FsResult};
use crate::container::inode::{NewNode, RenameMode, SetAttr, Stat, Time, XattrMode};
use crate::store::manifest::Kind;
pub use ops::VzFs;
use ops::caller;

/// How long the kernel may cache entries and attributes. Finite, but long: this
/// daemon is the only writer of the tree, every change goes through this mount
/// (so the kernel updates or drops what it cached), and each reply carries fresh
/// attributes. Nothing changes a container's tree behind the kernel's back.
const TTL: Duration = Duration::from_secs(60);

fn reply_entry(reply: ReplyEntry, r: FsResult<Stat>) {
    match r {
        Ok(st) => reply.entry(&TTL, &attr::file_attr(&st), Generation(0)),
        Err(e) => reply.error(errno::to_errno(&e)),
    }
}

fn reply_attr(reply: ReplyAttr, r: FsResult<Stat>) {
    match r {
        Ok(st) => reply.attr(&TTL, &attr::file_attr(&st)),
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
        self.passthrough.set_enabled(on);
        if on {
            log::info!("FUSE passthrough enabled");
        } else {
            log::warn!(
                "the kernel does not offer FUSE passthrough; reads are served by the daemon"
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.tree().lookup(parent.0, name.as_bytes()));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.tree().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.tree().stat(ino.0));
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
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: attr::time_set(atime),
            mtime: attr::time_set(mtime),
            ctime: ctime.map(Time::from_system),
        };
        reply_attr(reply, self.do_setattr(ino.0, s));
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
        let r = match Kind::of_mode(mode) {
            Some(Kind::Dir | Kind::Symlink) | None => Err(FsError::Invalid),
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
        let r = match self.do_open(ino.0, ops::open_mode(flags), |f| reply.open_backing(f)) {
            Ok(r) => r,
            Err(e) => return reply.error(errno::to_errno(&e)),
        };
        let fh = FileHandle(r.fh);
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
        match r.backing {
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
        self.drop_handle(fh.0);
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
            let Ok(st) = t.stat(e.ino) else { continue };
            let fa = attr::file_attr(&st);
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
        self.drop_handle(fh.0);
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
            Ok((s, files)) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                files + s.f_ffree,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
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
        reply_empty(reply, self.tree().stat(ino.0).map(|_| ()));
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
        let r = self.do_create(req, parent.0, name.as_bytes(), mode, |f| {
            reply.open_backing(f)
        });
        let (st, r) = match r {
            Ok(x) => x,
            Err(e) => return reply.error(errno::to_errno(&e)),
        };
        let (fa, fh) = (attr::file_attr(&st), FileHandle(r.fh));
        match r.backing {
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

    /// No ioctl is supported: answer ENOTTY ("not a typewriter", what a plain
    /// file answers) without logging, since programs probe ioctls all the time.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::from_i32(libc::ENOTTY));
    }
}
