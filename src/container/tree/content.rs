//! File content: opening, backing files, copy-up, and the sizes and times that
//! writes change.
//!
//! Slow work never runs under the tree's lock: checking an object before it is
//! first handed out (size, and blake3 unless verified since its ctime last
//! changed) and copying a shared file up. The free functions here take the lock
//! only to plan and to finish: [`open`], [`backing`], [`make_private`]. Other
//! requests, on other files or the same one, keep being served meanwhile.
//!
//! Copy-up order, so that a power failure never leaves the journal naming a
//! missing or short file: copy into `data/<ino>.copy-<n>`, fdatasync it, rename
//! it to `data/<ino>`, fsync `data/`, then journal the inode as private.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Tree;
use crate::container::error::{FsError, FsResult};
use crate::container::inode::{Content, Ino, OpenMode, Time};
use crate::container::journal::Record;
use crate::store::Hash;
use crate::store::fsutil::{self, failpoint_io};
use crate::store::integrity::ObjectChecker;
use crate::store::manifest::Kind;

/// What a copy-up keeps of the shared content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyUp {
    /// Copy the bytes (a write or a truncate to a non-zero size follows).
    Content,
    /// Start empty (the file is about to be truncated to zero).
    Empty,
}

/// An open regular file: whether its content is the container's own, and the
/// file that holds it (a checked object, or `data/<ino>`).
pub struct Opened {
    pub private: bool,
    pub file: Arc<File>,
}

fn lock(tree: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    tree.lock().unwrap_or_else(|p| p.into_inner())
}

/// Open regular file `ino`. A write open copies a shared file up first; a read
/// open of a shared file checks its object (unless an open handle already did).
/// Counts one open handle on success; the caller releases it with
/// [`Tree::release`].
pub fn open(tree: &Mutex<Tree>, ino: Ino, mode: OpenMode) -> FsResult<Opened> {
    {
        let t = lock(tree);
        match t.node(ino)?.attrs.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::File => {}
            _ => return Err(FsError::Invalid),
        }
    }
    match mode {
        OpenMode::Read => {}
        OpenMode::Write => make_private(tree, ino, CopyUp::Content)?,
        OpenMode::WriteTruncate => make_private(tree, ino, CopyUp::Empty)?,
    }
    let file = backing(tree, ino)?;
    let mut t = lock(tree);
    let n = t.node_mut(ino)?;
    n.opens += 1;
    Ok(Opened {
        private: n.attrs.content == Content::Private,
        file,
    })
}

/// The file holding `ino`'s content, opened (and for an object, checked) on
/// first use and kept while the inode has open handles.
pub fn backing(tree: &Mutex<Tree>, ino: Ino) -> FsResult<Arc<File>> {
    let (hash, size, checker) = {
        let mut t = lock(tree);
        if let Some(f) = t.node(ino)?.backing.clone() {
            // An object held open since its check may have been changed since:
            // each new open looks again (one fstat) and re-checks if so.
            let still = match &t.node(ino)?.attrs.content {
                Content::Shared(h) => t.checker.still_checked(&f, h, t.node(ino)?.attrs.size),
                _ => true,
            };
            if still {
                return Ok(f);
            }
            t.node_mut(ino)?.backing = None;
        }
        match t.node(ino)?.attrs.content.clone() {
            Content::Private => {
                let p = t.data_path(ino);
                let f = Arc::new(OpenOptions::new().read(true).write(true).open(&p)?);
                t.node_mut(ino)?.backing = Some(f.clone());
                return Ok(f);
            }
            Content::Shared(h) => (h, t.node(ino)?.attrs.size, t.checker.clone()),
            _ => return Err(FsError::Invalid),
        }
    };
    let checked = checker.open_checked(&hash, size);
    let mut t = lock(tree);
    let file = match checked {
        Ok(f) => Arc::new(f),
        Err(e) => {
            t.refuse(ino, &hash, &e);
            return Err(e.into());
        }
    };
    let n = t.node_mut(ino)?;
    match &n.backing {
        // Another request attached one meanwhile (or copied the file up): use it.
        Some(f) => Ok(f.clone()),
        None if n.attrs.content == Content::Shared(hash) => {
            n.backing = Some(file.clone());
            Ok(file)
        }
        None => {
            drop(t);
            backing(tree, ino)
        }
    }
}

/// Make `ino`'s content the container's own (no-op when it already is). The
/// copy runs without the lock; if the inode changed meanwhile (another request
/// copied it up first), the copy is discarded.
pub fn make_private(tree: &Mutex<Tree>, ino: Ino, how: CopyUp) -> FsResult<()> {
    loop {
        let (hash, size, tmp, checker) = {
            let t = lock(tree);
            let n = t.node(ino)?;
            let Content::Shared(hash) = n.attrs.content.clone() else {
                return Ok(());
            };
            (hash, n.attrs.size, t.copy_path(ino), t.checker.clone())
        };
        let staged = stage_copy(&checker, &hash, size, &tmp, how);
        let mut t = lock(tree);
        if let Err(e) = staged {
            let _ = fs::remove_file(&tmp);
            if let FsError::Store(se) = &e {
                t.refuse(ino, &hash, se);
            }
            return Err(e);
        }
        match t.node(ino)?.attrs.content.clone() {
            Content::Shared(h) if h == hash => return t.finish_copy_up(ino, &tmp, how),
            _ => {
                let _ = fs::remove_file(&tmp);
            }
        }
    }
}

/// Copy the checked object `hash` (or nothing) into `tmp` and make it durable.
fn stage_copy(
    checker: &ObjectChecker,
    hash: &Hash,
    size: u64,
    tmp: &PathBuf,
    how: CopyUp,
) -> FsResult<()> {
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)?;
    if how == CopyUp::Content {
        let src = checker.open_checked(hash, size)?;
        let segs = fsutil::data_segments(&src, size)?;
        failpoint_io("copy-up")?;
        fsutil::copy_segments(&src, &out, &segs, size)?;
    }
    out.sync_data()?;
    Ok(())
}

static COPY_SEQ: AtomicU64 = AtomicU64::new(0);

impl Tree {
    /// A fresh temporary name in `data/` for a copy-up of `ino`.
    fn copy_path(&self, ino: Ino) -> PathBuf {
        let n = COPY_SEQ.fetch_add(1, Ordering::Relaxed);
        self.data_dir.join(format!("{ino}.copy-{n}"))
    }

    /// Move a staged copy into place and journal the inode as private; on any
    /// failure the inode stays shared and the copy is removed.
    fn finish_copy_up(&mut self, ino: Ino, tmp: &PathBuf, how: CopyUp) -> FsResult<()> {
        let dest = self.data_path(ino);
        let placed = fs::rename(tmp, &dest).and_then(|()| fsutil::sync_dir(&self.data_dir));
        if let Err(e) = placed {
            let _ = fs::remove_file(tmp);
            let _ = fs::remove_file(&dest);
            return Err(e.into());
        }
        let mut a = self.node(ino)?.attrs.clone();
        a.content = Content::Private;
        if how == CopyUp::Empty {
            a.size = 0;
        }
        if let Err(e) = self.commit(vec![Record::Inode(ino, a)]) {
            let _ = fs::remove_file(&dest);
            return Err(e);
        }
        self.node_mut(ino)?.backing = None;
        Ok(())
    }

    /// Log a refused object once, with the path in the container and the base.
    pub(super) fn refuse(&mut self, ino: Ino, hash: &Hash, e: &crate::store::Error) {
        if self.refused.insert(*hash) {
            log::error!(
                "refusing to serve {} of container base {}: {e} (object {hash}); reads of it fail with EIO until it is repaired (vzstore verify --repair)",
                String::from_utf8_lossy(&self.path_of(ino)),
                self.base_label,
            );
        }
    }

    /// Dedup of a mounted container (`container::share`): the private file
    /// `ino` whose bytes are object `hash` refers to the object again, if
    /// nothing has it open and its data file is still what was hashed
    /// (`stamp`). The change is journaled and synced before the data file
    /// goes; the inode's size and times stay as `stat` showed them. Returns
    /// whether it was applied.
    pub fn share_again(
        &mut self,
        ino: Ino,
        hash: Hash,
        stamp: &crate::container::share::Stamp,
    ) -> FsResult<bool> {
        let Ok(n) = self.node(ino) else {
            return Ok(false);
        };
        if n.attrs.content != Content::Private || n.opens > 0 || n.attr_dirty {
            return Ok(false);
        }
        let path = self.data_path(ino);
        let Ok(m) = fs::symlink_metadata(&path) else {
            return Ok(false);
        };
        if crate::container::share::Stamp::of(&m) != *stamp {
            return Ok(false);
        }
        let st = self.stat(ino)?;
        let mut a = self.node(ino)?.attrs.clone();
        a.content = Content::Shared(hash);
        a.size = st.size;
        a.mtime = st.mtime;
        a.ctime = st.ctime;
        self.commit(vec![Record::Inode(ino, a)])?;
        self.journal.sync()?;
        fs::remove_file(&path)?;
        Ok(true)
    }

    /// Whether an inode's content is the container's own file.
    pub fn is_private(&self, ino: Ino) -> FsResult<bool> {
        Ok(self.node(ino)?.attrs.content == Content::Private)
    }

    /// Record that bytes up to `end` were written (journaled at flush, release
    /// or fsync).
    pub fn wrote(&mut self, ino: Ino, end: u64) -> FsResult<()> {
        let now = Time::now();
        let n = self.node_mut(ino)?;
        n.attrs.size = n.attrs.size.max(end);
        n.attrs.mtime = now;
        n.attrs.ctime = now;
        n.attr_dirty = true;
        Ok(())
    }

    /// A handle was closed.
    pub fn release(&mut self, ino: Ino) -> FsResult<()> {
        if self.is_private(ino)? {
            // Writes may have gone straight to the data file (passthrough).
            let st = self.stat(ino)?;
            let n = self.node_mut(ino)?;
            if n.attrs.size != st.size || n.attrs.mtime != st.mtime {
                n.attrs.size = st.size;
                n.attrs.mtime = st.mtime;
                n.attrs.ctime = st.ctime;
                n.attr_dirty = true;
            }
        }
        let n = self.node_mut(ino)?;
        n.opens = n.opens.saturating_sub(1);
        if n.opens == 0 {
            n.backing = None;
        }
        self.flush_attrs(Some(ino))?;
        self.maybe_free(ino)
    }

    /// Journal size/time changes made by writes (of one inode, or all).
    pub fn flush_attrs(&mut self, ino: Option<Ino>) -> FsResult<()> {
        let inos: Vec<Ino> = match ino {
            Some(i) => vec![i],
            None => self
                .nodes
                .iter()
                .filter(|(_, n)| n.attr_dirty)
                .map(|(i, _)| i)
                .collect(),
        };
        let recs: Vec<Record> = inos
            .iter()
            .filter_map(|i| self.nodes.get(i).filter(|n| n.attr_dirty).map(|n| (i, n)))
            .map(|(i, n)| Record::Inode(*i, n.attrs.clone()))
            .collect();
        if recs.is_empty() {
            return Ok(());
        }
        self.commit(recs)?;
        for i in inos {
            if let Some(n) = self.nodes.get_mut(&i) {
                n.attr_dirty = false;
            }
        }
        Ok(())
    }

    /// fsync of a file: its data (if private), new names in `data/`, and the
    /// journal.
    pub fn fsync(&mut self, ino: Ino) -> FsResult<()> {
        if self.is_private(ino)? {
            match self.node(ino)?.backing.clone() {
                Some(f) => f.sync_data()?,
                None => File::open(self.data_path(ino))?.sync_data()?,
            }
        }
        self.flush_attrs(Some(ino))?;
        self.sync_data_dir()?;
        self.journal.sync()?;
        Ok(())
    }
}
