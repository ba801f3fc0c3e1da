//! Names: lookup and forget, listing, creating, unlinking, renaming and linking.
//! Each change builds its journal records from copies of the inodes it touches
//! and hands them to [`Tree::commit`].

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use super::Tree;
use crate::container::error::{FsError, FsResult};
use crate::container::inode::{
    Caller, Content, DirEntry, Ino, InodeAttrs, LINK_MAX, NAME_MAX, NewNode, ROOT, RenameMode,
    Stat, Time,
};
use crate::container::journal::Record;
use crate::store::manifest::Kind;

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(FsError::Invalid);
    }
    Ok(())
}

impl Tree {
    fn child(&self, parent: Ino, name: &[u8]) -> FsResult<Option<Ino>> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(self.dir(parent)?.children.get(name).copied())
    }

    /// A copy of an inode's attributes, to change and journal.
    fn attrs(&self, ino: Ino) -> FsResult<InodeAttrs> {
        Ok(self.node(ino)?.attrs.clone())
    }

    /// Look a name up in a directory; adds one lookup reference.
    pub fn lookup(&mut self, parent: Ino, name: &[u8]) -> FsResult<Stat> {
        let ino = match name {
            b"." => parent,
            b".." => self.dir(parent)?.attrs.parent,
            _ => self.child(parent, name)?.ok_or(FsError::NotFound)?,
        };
        self.node_mut(ino)?.lookups += 1;
        self.stat(ino)
    }

    /// Drop `n` lookup references; frees the inode if it is unlinked and unused.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        if let Err(e) = self.maybe_free(ino) {
            log::warn!("freeing inode {ino}: {e}");
        }
    }

    /// Take one lookup reference for an entry returned by readdirplus.
    pub fn add_lookup(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    /// Remove an inode that has no name, no lookup and no open handle left: the
    /// journal first, then its data file (a leftover file is removed at load).
    pub(super) fn maybe_free(&mut self, ino: Ino) -> FsResult<()> {
        let Some(n) = self.nodes.get(&ino) else {
            return Ok(());
        };
        if ino == ROOT || n.attrs.nlink > 0 || n.lookups > 0 || n.opens > 0 {
            return Ok(());
        }
        let private = n.attrs.content == Content::Private;
        self.commit(vec![Record::Drop(ino)])?;
        if private {
            let p = self.data_path(ino);
            if let Err(e) = fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("{}: {e} (removed at the next mount)", p.display());
            }
        }
        Ok(())
    }

    /// List a directory, with `.` and `..` first.
    pub fn readdir(&self, ino: Ino) -> FsResult<Vec<DirEntry>> {
        let n = self.dir(ino)?;
        let mut out = Vec::with_capacity(n.children.len() + 2);
        out.push(DirEntry {
            name: b".".to_vec(),
            ino,
            kind: Kind::Dir,
        });
        out.push(DirEntry {
            name: b"..".to_vec(),
            ino: n.attrs.parent,
            kind: Kind::Dir,
        });
        for (name, &child) in &n.children {
            if let Some(c) = self.nodes.get(&child) {
                out.push(DirEntry {
                    name: name.clone(),
                    ino: child,
                    kind: c.attrs.kind,
                });
            }
        }
        Ok(out)
    }

    /// Target of a symlink.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match &self.node(ino)?.attrs.content {
            Content::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    /// Create a new inode of `kind` named `name` in `parent`. Returns its stat
    /// with one lookup reference taken. A regular file gets an empty data file
    /// first; if the journal cannot take the change, that file is removed again.
    pub fn make_node(
        &mut self,
        parent: Ino,
        name: &[u8],
        new: NewNode,
        caller: Caller,
    ) -> FsResult<Stat> {
        let NewNode {
            kind,
            mode,
            rdev,
            target,
        } = new;
        check_name(name)?;
        if self.child(parent, name)?.is_some() {
            return Err(FsError::Exists);
        }
        let now = Time::now();
        let mut pattrs = self.attrs(parent)?;
        let setgid_dir = pattrs.mode & 0o2000 != 0;
        let gid = if setgid_dir { pattrs.gid } else { caller.gid };
        let mut mode = mode & 0o7777;
        if kind == Kind::Dir && setgid_dir {
            mode |= 0o2000;
        }
        let (content, size) = match (kind, target) {
            (Kind::Symlink, Some(t)) => {
                let len = t.len() as u64;
                (Content::Symlink(t), len)
            }
            (Kind::Symlink, None) => return Err(FsError::Invalid),
            (Kind::File, _) => (Content::Private, 0),
            _ => (Content::None, 0),
        };
        let attrs = InodeAttrs {
            kind,
            mode,
            uid: caller.uid,
            gid,
            size,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev,
            atime: now,
            mtime: now,
            ctime: now,
            xattrs: BTreeMap::new(),
            content,
            parent,
        };
        let ino = self.next_ino;
        pattrs.mtime = now;
        pattrs.ctime = now;
        if kind == Kind::Dir {
            pattrs.nlink += 1;
        }
        let data = self.data_path(ino);
        if kind == Kind::File {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&data)?;
            self.data_dir_dirty = true;
        }
        let recs = vec![
            Record::NextIno(ino + 1),
            Record::Inode(ino, attrs),
            Record::Add(parent, name.to_vec(), ino),
            Record::Inode(parent, pattrs),
        ];
        if let Err(e) = self.commit(recs) {
            if kind == Kind::File {
                let _ = fs::remove_file(&data);
            }
            return Err(e);
        }
        self.node_mut(ino)?.lookups = 1;
        self.stat(ino)
    }

    /// Remove a non-directory name.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> FsResult<()> {
        let ino = self.child(parent, name)?.ok_or(FsError::NotFound)?;
        if self.node(ino)?.attrs.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let recs = self.detach_records(parent, name, ino, Time::now())?;
        self.commit(recs)?;
        self.maybe_free(ino)
    }

    /// Remove an empty directory.
    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> FsResult<()> {
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        let ino = self.child(parent, name)?.ok_or(FsError::NotFound)?;
        let n = self.node(ino)?;
        if n.attrs.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if !n.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let recs = self.detach_records(parent, name, ino, Time::now())?;
        self.commit(recs)?;
        self.maybe_free(ino)
    }

    /// Records that remove entry `name` -> `ino` from `parent`, fixing link
    /// counts and times.
    fn detach_records(
        &self,
        parent: Ino,
        name: &[u8],
        ino: Ino,
        now: Time,
    ) -> FsResult<Vec<Record>> {
        let mut a = self.attrs(ino)?;
        let is_dir = a.kind == Kind::Dir;
        let mut p = self.attrs(parent)?;
        p.mtime = now;
        p.ctime = now;
        if is_dir {
            p.nlink = p.nlink.saturating_sub(1);
        }
        a.nlink = if is_dir { 0 } else { a.nlink.saturating_sub(1) };
        a.ctime = now;
        Ok(vec![
            Record::Remove(parent, name.to_vec()),
            Record::Inode(parent, p),
            Record::Inode(ino, a),
        ])
    }

    /// Is `ancestor` the directory `ino` or one of its ancestors?
    fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.nodes.get(&ino) {
                Some(n) if n.attrs.parent != ino => ino = n.attrs.parent,
                _ => return false,
            }
        }
    }

    /// Rename, with RENAME_NOREPLACE and RENAME_EXCHANGE semantics.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        mode: RenameMode,
    ) -> FsResult<()> {
        check_name(newname)?;
        let src = self.child(parent, name)?.ok_or(FsError::NotFound)?;
        let dst = self.child(newparent, newname)?;
        let src_dir = self.node(src)?.attrs.kind == Kind::Dir;
        if src_dir && self.is_ancestor(src, newparent) {
            return Err(FsError::Invalid);
        }
        let now = Time::now();
        // Working copies of every inode the rename touches, journaled at the end.
        let mut touched: BTreeMap<Ino, InodeAttrs> = BTreeMap::new();
        for i in [parent, newparent, src] {
            touched.insert(i, self.attrs(i)?);
        }
        let mut recs = Vec::new();
        let mut freed = None;
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (RenameMode::Exchange, Some(dst)) => {
                if dst == src {
                    return Ok(());
                }
                let dst_dir = self.node(dst)?.attrs.kind == Kind::Dir;
                if dst_dir && self.is_ancestor(dst, parent) {
                    return Err(FsError::Invalid);
                }
                touched.insert(dst, self.attrs(dst)?);
                recs.push(Record::Add(parent, name.to_vec(), dst));
                recs.push(Record::Add(newparent, newname.to_vec(), src));
                if parent != newparent {
                    reparent(&mut touched, src, src_dir, parent, newparent);
                    reparent(&mut touched, dst, dst_dir, newparent, parent);
                }
                for i in [src, dst, parent, newparent] {
                    if let Some(a) = touched.get_mut(&i) {
                        a.ctime = now;
                    }
                }
                for i in [parent, newparent] {
                    if let Some(a) = touched.get_mut(&i) {
                        a.mtime = now;
                    }
                }
                recs.extend(touched.into_iter().map(|(i, a)| Record::Inode(i, a)));
                return self.commit(recs);
            }
            (_, Some(dst)) if dst == src => return Ok(()),
            (_, Some(dst)) => {
                let d = self.node(dst)?;
                let dst_dir = d.attrs.kind == Kind::Dir;
                if src_dir && !dst_dir {
                    return Err(FsError::NotDir);
                }
                if !src_dir && dst_dir {
                    return Err(FsError::IsDir);
                }
                if dst_dir && !d.children.is_empty() {
                    return Err(FsError::NotEmpty);
                }
                // The replaced inode loses this name (the entry itself is
                // overwritten by the Add below).
                let mut a = self.attrs(dst)?;
                a.nlink = if dst_dir {
                    0
                } else {
                    a.nlink.saturating_sub(1)
                };
                a.ctime = now;
                if dst_dir && let Some(p) = touched.get_mut(&newparent) {
                    p.nlink = p.nlink.saturating_sub(1);
                }
                touched.insert(dst, a);
                freed = Some(dst);
            }
            (_, None) => {}
        }
        recs.push(Record::Remove(parent, name.to_vec()));
        recs.push(Record::Add(newparent, newname.to_vec(), src));
        if parent != newparent {
            reparent(&mut touched, src, src_dir, parent, newparent);
        }
        if let Some(a) = touched.get_mut(&src) {
            a.ctime = now;
        }
        for i in [parent, newparent] {
            if let Some(a) = touched.get_mut(&i) {
                a.mtime = now;
                a.ctime = now;
            }
        }
        recs.extend(touched.into_iter().map(|(i, a)| Record::Inode(i, a)));
        self.commit(recs)?;
        match freed {
            Some(dst) => self.maybe_free(dst),
            None => Ok(()),
        }
    }

    /// A new name for an existing non-directory inode.
    pub fn link(&mut self, ino: Ino, newparent: Ino, newname: &[u8]) -> FsResult<Stat> {
        check_name(newname)?;
        let mut a = self.attrs(ino)?;
        if a.kind == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        if a.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if self.child(newparent, newname)?.is_some() {
            return Err(FsError::Exists);
        }
        let now = Time::now();
        a.nlink += 1;
        a.ctime = now;
        let mut p = self.attrs(newparent)?;
        p.mtime = now;
        p.ctime = now;
        self.commit(vec![
            Record::Add(newparent, newname.to_vec(), ino),
            Record::Inode(ino, a),
            Record::Inode(newparent, p),
        ])?;
        self.node_mut(ino)?.lookups += 1;
        self.stat(ino)
    }
}

/// Move directory `ino` from `from` to `to` in the working copies: its parent
/// pointer and both directories' link counts.
fn reparent(touched: &mut BTreeMap<Ino, InodeAttrs>, ino: Ino, is_dir: bool, from: Ino, to: Ino) {
    if !is_dir {
        return;
    }
    if let Some(a) = touched.get_mut(&ino) {
        a.parent = to;
    }
    if let Some(f) = touched.get_mut(&from) {
        f.nlink = f.nlink.saturating_sub(1);
    }
    if let Some(t) = touched.get_mut(&to) {
        t.nlink += 1;
    }
}
