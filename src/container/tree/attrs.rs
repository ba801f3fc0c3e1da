//! Attributes: chmod, chown, truncate, utimens, and extended attributes. None of
//! these touch shared content except a truncate, which copies up first (see
//! [`super::content::make_private`], called by the adapter before `setattr`).

use super::Tree;
use crate::container::error::{FsError, FsResult};
use crate::container::inode::{Ino, SetAttr, Stat, Time, TimeSet, XattrMode};
use crate::container::journal::Record;
use crate::store::manifest::Kind;

impl Tree {
    /// chmod, chown, truncate, utimens. A size change needs the content to be
    /// private already (`content::make_private`); it is refused otherwise.
    pub fn setattr(&mut self, ino: Ino, s: SetAttr) -> FsResult<Stat> {
        let now = Time::now();
        let mut a = self.node(ino)?.attrs.clone();
        if let Some(size) = s.size {
            match a.kind {
                Kind::Dir => return Err(FsError::IsDir),
                Kind::File => {}
                _ => return Err(FsError::Invalid),
            }
            if !self.is_private(ino)? {
                return Err(FsError::Invalid);
            }
            a.size = size;
            a.mtime = now;
        }
        if let Some(mode) = s.mode {
            a.mode = mode & 0o7777;
        }
        if let Some(uid) = s.uid {
            a.uid = uid;
        }
        if let Some(gid) = s.gid {
            a.gid = gid;
        }
        let pick = |t: TimeSet| match t {
            TimeSet::Now => now,
            TimeSet::At(t) => t,
        };
        if let Some(t) = s.atime {
            a.atime = pick(t);
        }
        if let Some(t) = s.mtime {
            a.mtime = pick(t);
        }
        a.ctime = s.ctime.unwrap_or(now);
        let (atime, mtime) = (a.atime, a.mtime);
        let private = self.is_private(ino)?;
        // The data file changes first (it can fail: EIO, EFBIG); the journal
        // record follows, so a failed truncate leaves the inode as it was.
        if let Some(size) = s.size {
            let p = self.data_path(ino);
            match self.node(ino)?.backing.clone() {
                Some(f) => f.set_len(size)?,
                None => std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)?
                    .set_len(size)?,
            }
        }
        if (s.atime.is_some() || s.mtime.is_some() || s.size.is_some()) && private {
            // Keep the data file's times equal to the set ones (stat() takes the
            // later of the two, so writes made through passthrough still show).
            let ts = |t: Time| rustix::fs::Timespec {
                tv_sec: t.sec,
                tv_nsec: t.nsec as _,
            };
            let times = rustix::fs::Timestamps {
                last_access: ts(atime),
                last_modification: ts(mtime),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                self.data_path(ino),
                &times,
                rustix::fs::AtFlags::empty(),
            )?;
        }
        self.commit(vec![Record::Inode(ino, a)])?;
        self.stat(ino)
    }

    /// Value of one extended attribute.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        self.node(ino)?
            .attrs
            .xattrs
            .get(name)
            .cloned()
            .ok_or(FsError::NoAttr)
    }

    /// Names of all extended attributes, NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        for k in self.node(ino)?.attrs.xattrs.keys() {
            out.extend_from_slice(k);
            out.push(0);
        }
        Ok(out)
    }

    /// Set an extended attribute.
    pub fn setxattr(
        &mut self,
        ino: Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> FsResult<()> {
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Range);
        }
        let mut a = self.node(ino)?.attrs.clone();
        let exists = a.xattrs.contains_key(name);
        match mode {
            XattrMode::Create if exists => return Err(FsError::Exists),
            XattrMode::Replace if !exists => return Err(FsError::NoAttr),
            _ => {}
        }
        a.xattrs.insert(name.to_vec(), value.to_vec());
        a.ctime = Time::now();
        self.commit(vec![Record::Inode(ino, a)])
    }

    /// Remove an extended attribute.
    pub fn removexattr(&mut self, ino: Ino, name: &[u8]) -> FsResult<()> {
        let mut a = self.node(ino)?.attrs.clone();
        if a.xattrs.remove(name).is_none() {
            return Err(FsError::NoAttr);
        }
        a.ctime = Time::now();
        self.commit(vec![Record::Inode(ino, a)])
    }
}
