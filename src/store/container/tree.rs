//! The live file tree of a mounted container: its base manifest turned into
//! inodes, with the container's own changes applied, and every operation a root
//! file system needs. Pure store logic: no FUSE types here.
//!
//! Content of a regular file is either `Shared` (an object of the store, opened
//! read-only, never written) or `Private` (`private/<CT>/data/<ino>`, the
//! container's own file). The first write or truncate of a shared file copies it
//! into the private area (copy-up); metadata changes (chmod, chown, utimes,
//! xattrs) only change the inode here, so the content stays shared.
//!
//! Inode numbers: base entries take their manifest index + 1 (so the root is 1 and
//! hardlinked names share their leader's number); new inodes count up from there.
//! They are stable for the container's life, across remounts.
//!
//! Lookup counts follow the FUSE rules (lookup/create/mkdir/mknod/symlink/link add
//! one, forget removes); an unlinked inode lives on while it is looked up or open.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::Store;
use crate::store::container::error::{FsError, FsResult};
use crate::store::container::journal::{Journal, Rec};
use crate::store::container::table::NodeTable;
use crate::store::error::IoContext;
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Kind, Manifest};

/// An inode number.
pub type Ino = u64;

/// A cheap hasher (FxHash's rotate-xor-multiply, 8 bytes at a time) for the
/// inode table and the mount-time path index: keys are small integers and paths
/// we produced ourselves, so SipHash's resistance to chosen keys buys nothing and
/// costs a good part of the mount time of a 50,000-entry template.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map using [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
/// The root directory's inode number.
pub const ROOT: Ino = 1;
/// Longest file name accepted.
pub const NAME_MAX: usize = 255;
const LINK_MAX: u32 = 65_000;
/// Compact the journal once it grows beyond this.
const COMPACT_AT: u64 = 64 << 20;

/// A point in time, seconds and nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

impl Time {
    /// The current time.
    pub fn now() -> Time {
        match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Time {
                sec: d.as_secs() as i64,
                nsec: d.subsec_nanos(),
            },
            Err(_) => Time { sec: 0, nsec: 0 },
        }
    }
}

/// Where a file's content is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Data {
    /// Not a regular file or symlink.
    None,
    /// A store object, shared with the template and other containers.
    Shared(Hash),
    /// The container's own file, `data/<ino>`.
    Private,
    /// Symlink target.
    Symlink(Vec<u8>),
}

/// Everything about an inode except a directory's entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
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
    pub data: Data,
    /// For directories: the parent directory (the root is its own parent).
    pub parent: Ino,
}

/// The attributes reported for an inode.
#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub meta: Meta,
    /// 512-byte blocks, as `stat` reports.
    pub blocks: u64,
}

struct Node {
    meta: Meta,
    children: BTreeMap<Vec<u8>, Ino>,
    lookups: u64,
    opens: u32,
    backing: Option<Arc<File>>,
    /// Size or times changed by writes and not journaled yet.
    attr_dirty: bool,
}

/// Changes requested by `setattr`.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// `Some(None)` means "now".
    pub atime: Option<Option<Time>>,
    pub mtime: Option<Option<Time>>,
    pub ctime: Option<Time>,
}

/// Who asks, for the owner of new inodes.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// What to create with [`Tree::make_node`].
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

/// The tree of one mounted container.
pub struct Tree {
    store: Store,
    data_dir: PathBuf,
    nodes: NodeTable<Node>,
    next_ino: Ino,
    journal: Journal,
    /// Inodes changed since the base: what a snapshot must hold.
    dirty: HashSet<Ino>,
}

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
    /// Build the tree of a container from its base manifest and its saved changes
    /// in `private_dir` (which holds `state`, `journal` and `data/`).
    pub fn load(store: &Store, base: Manifest, private_dir: PathBuf) -> crate::store::Result<Tree> {
        let data_dir = private_dir.join("data");
        fs::create_dir_all(&data_dir).at(&data_dir)?;
        let t0 = std::time::Instant::now();
        let next_ino = base.entries.len() as Ino + 1;
        let nodes = base_nodes(base);
        log::info!("base inodes: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let (journal, recs) = Journal::open(&private_dir)?;
        let mut tree = Tree {
            store: store.clone(),
            data_dir,
            next_ino,
            nodes,
            journal,
            dirty: HashSet::new(),
        };
        for r in recs {
            tree.replay(r);
        }
        let cleaned = tree.cleanup_after_load()?;
        // A clean unmount leaves an empty journal: nothing to compact then.
        if cleaned || !tree.journal.is_empty() {
            tree.compact()?;
        }
        Ok(tree)
    }

    fn replay(&mut self, r: Rec) {
        match r {
            Rec::Meta(ino, meta) => {
                self.dirty.insert(ino);
                match self.nodes.get_mut(&ino) {
                    Some(n) => n.meta = meta,
                    None => {
                        self.nodes.insert(ino, new_node(meta));
                    }
                }
            }
            Rec::Children(ino, children) => {
                self.dirty.insert(ino);
                if let Some(n) = self.nodes.get_mut(&ino) {
                    n.children = children;
                }
            }
            Rec::Add(dir, name, ino) => {
                self.dirty.insert(dir);
                if let Some(n) = self.nodes.get_mut(&dir) {
                    n.children.insert(name, ino);
                }
            }
            Rec::Remove(dir, name) => {
                self.dirty.insert(dir);
                if let Some(n) = self.nodes.get_mut(&dir) {
                    n.children.remove(&name);
                }
            }
            Rec::Drop(ino) => {
                self.dirty.insert(ino);
                self.nodes.remove(&ino);
            }
            Rec::NextIno(n) => self.next_ino = self.next_ino.max(n),
        }
    }

    /// After a restart nothing is open: drop unlinked inodes, remove data files
    /// that no inode owns, and take private file sizes from the files themselves
    /// (writes reach the file before their size reaches the journal).
    fn cleanup_after_load(&mut self) -> crate::store::Result<bool> {
        let mut changed = false;
        let orphans: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.meta.nlink == 0)
            .map(|(i, _)| i)
            .collect();
        for ino in orphans {
            self.nodes.remove(&ino);
            self.dirty.insert(ino);
            changed = true;
        }
        for e in fs::read_dir(&self.data_dir).at(&self.data_dir)? {
            let e = e.at(&self.data_dir)?;
            let owned = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<Ino>().ok())
                .and_then(|ino| self.nodes.get_mut(&ino))
                .filter(|n| n.meta.data == Data::Private);
            match owned {
                Some(n) => {
                    let m = e.metadata().at(e.path())?;
                    changed |= n.meta.size != m.len();
                    n.meta.size = m.len();
                }
                None => {
                    fs::remove_file(e.path()).at(e.path())?;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// Write the full set of changes as the new snapshot and empty the journal.
    pub fn compact(&mut self) -> crate::store::Result<()> {
        let mut recs = vec![Rec::NextIno(self.next_ino)];
        let mut dirty: Vec<Ino> = self.dirty.iter().copied().collect();
        dirty.sort_unstable();
        for ino in dirty {
            match self.nodes.get_mut(&ino) {
                Some(n) => {
                    n.attr_dirty = false;
                    recs.push(Rec::Meta(ino, n.meta.clone()));
                    if n.meta.kind == Kind::Dir {
                        recs.push(Rec::Children(ino, n.children.clone()));
                    }
                }
                None => recs.push(Rec::Drop(ino)),
            }
        }
        self.journal.compact(&recs)
    }

    /// Journal pending size/time changes and flush the journal to disk.
    pub fn sync(&mut self) -> FsResult<()> {
        self.flush_attrs(None)?;
        self.journal.sync()?;
        Ok(())
    }

    fn log(&mut self, recs: Vec<Rec>) -> FsResult<()> {
        for r in &recs {
            match r {
                Rec::Meta(i, _)
                | Rec::Children(i, _)
                | Rec::Add(i, _, _)
                | Rec::Remove(i, _)
                | Rec::Drop(i) => {
                    self.dirty.insert(*i);
                }
                Rec::NextIno(_) => {}
            }
        }
        self.journal.append(&recs)?;
        if self.journal.len() > COMPACT_AT {
            self.compact()?;
        }
        Ok(())
    }

    fn meta_rec(&self, ino: Ino) -> Rec {
        match self.nodes.get(&ino) {
            Some(n) => Rec::Meta(ino, n.meta.clone()),
            None => Rec::Drop(ino),
        }
    }

    fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(FsError::Stale)
    }

    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::Stale)
    }

    fn dir(&self, ino: Ino) -> FsResult<&Node> {
        let n = self.node(ino)?;
        if n.meta.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    /// Attributes of an inode. For the container's own files, size and times
    /// come from the data file too: with FUSE passthrough the kernel writes to it
    /// directly and the daemon never sees those writes.
    pub fn attr(&self, ino: Ino) -> FsResult<Attr> {
        let n = self.node(ino)?;
        let mut meta = n.meta.clone();
        let mut blocks = meta.size.div_ceil(512);
        if meta.data == Data::Private {
            let st = match &n.backing {
                Some(f) => f.metadata(),
                None => fs::metadata(self.data_path(ino)),
            };
            if let Ok(st) = st {
                use std::os::unix::fs::MetadataExt;
                meta.size = st.len();
                blocks = st.blocks();
                let mtime = Time {
                    sec: st.mtime(),
                    nsec: st.mtime_nsec() as u32,
                };
                let ctime = Time {
                    sec: st.ctime(),
                    nsec: st.ctime_nsec() as u32,
                };
                if (mtime.sec, mtime.nsec) > (meta.mtime.sec, meta.mtime.nsec) {
                    meta.mtime = mtime;
                }
                if (ctime.sec, ctime.nsec) > (meta.ctime.sec, meta.ctime.nsec) {
                    meta.ctime = ctime;
                }
            }
        }
        Ok(Attr { ino, meta, blocks })
    }

    /// Whether an inode's content is the container's own file.
    pub fn is_private(&self, ino: Ino) -> FsResult<bool> {
        Ok(self.node(ino)?.meta.data == Data::Private)
    }

    fn child(&self, parent: Ino, name: &[u8]) -> FsResult<Option<Ino>> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        Ok(self.dir(parent)?.children.get(name).copied())
    }

    /// Look a name up in a directory; adds one lookup reference.
    pub fn lookup(&mut self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        let ino = match name {
            b"." => parent,
            b".." => self.dir(parent)?.meta.parent,
            _ => self.child(parent, name)?.ok_or(FsError::NotFound)?,
        };
        self.node_mut(ino)?.lookups += 1;
        self.attr(ino)
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

    fn maybe_free(&mut self, ino: Ino) -> FsResult<()> {
        let Some(n) = self.nodes.get(&ino) else {
            return Ok(());
        };
        if ino == ROOT || n.meta.nlink > 0 || n.lookups > 0 || n.opens > 0 {
            return Ok(());
        }
        let private = n.meta.data == Data::Private;
        self.nodes.remove(&ino);
        if private {
            let p = self.data_path(ino);
            match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        self.log(vec![Rec::Drop(ino)])
    }

    fn data_path(&self, ino: Ino) -> PathBuf {
        self.data_dir.join(ino.to_string())
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
            ino: n.meta.parent,
            kind: Kind::Dir,
        });
        for (name, &child) in &n.children {
            if let Some(c) = self.nodes.get(&child) {
                out.push(DirEntry {
                    name: name.clone(),
                    ino: child,
                    kind: c.meta.kind,
                });
            }
        }
        Ok(out)
    }

    /// Take one lookup reference for an entry returned by readdirplus.
    pub fn add_lookup(&mut self, ino: Ino) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    /// Target of a symlink.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match &self.node(ino)?.meta.data {
            Data::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::Invalid),
        }
    }

    fn alloc(&mut self, meta: Meta) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut n = new_node(meta);
        n.lookups = 1;
        self.nodes.insert(ino, n);
        ino
    }

    /// Create a new inode of `kind` named `name` in `parent`. Returns its attrs
    /// with one lookup reference taken.
    pub fn make_node(
        &mut self,
        parent: Ino,
        name: &[u8],
        new: NewNode,
        caller: Caller,
    ) -> FsResult<Attr> {
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
        let pmeta = &self.dir(parent)?.meta;
        let setgid_dir = pmeta.mode & 0o2000 != 0;
        let gid = if setgid_dir { pmeta.gid } else { caller.gid };
        let mut mode = mode & 0o7777;
        if kind == Kind::Dir && setgid_dir {
            mode |= 0o2000;
        }
        let (data, size) = match (kind, target) {
            (Kind::Symlink, Some(t)) => {
                let len = t.len() as u64;
                (Data::Symlink(t), len)
            }
            (Kind::File, _) => (Data::Private, 0),
            _ => (Data::None, 0),
        };
        let meta = Meta {
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
            data,
            parent,
        };
        let ino = self.alloc(meta);
        if kind == Kind::File {
            let p = self.data_path(ino);
            if let Err(e) = OpenOptions::new().write(true).create_new(true).open(&p) {
                self.nodes.remove(&ino);
                return Err(e.into());
            }
        }
        let pn = self.node_mut(parent)?;
        pn.children.insert(name.to_vec(), ino);
        pn.meta.mtime = now;
        pn.meta.ctime = now;
        if kind == Kind::Dir {
            pn.meta.nlink += 1;
        }
        let recs = vec![
            Rec::NextIno(self.next_ino),
            self.meta_rec(ino),
            Rec::Add(parent, name.to_vec(), ino),
            self.meta_rec(parent),
        ];
        self.log(recs)?;
        self.attr(ino)
    }

    /// Remove a non-directory name.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> FsResult<()> {
        let ino = self.child(parent, name)?.ok_or(FsError::NotFound)?;
        if self.node(ino)?.meta.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.detach(parent, name, ino)?;
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
        if n.meta.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if !n.children.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.detach(parent, name, ino)?;
        self.maybe_free(ino)
    }

    /// Remove entry `name` -> `ino` from `parent`, fixing link counts and times.
    fn detach(&mut self, parent: Ino, name: &[u8], ino: Ino) -> FsResult<()> {
        let now = Time::now();
        let is_dir = self.node(ino)?.meta.kind == Kind::Dir;
        let pn = self.node_mut(parent)?;
        pn.children.remove(name);
        pn.meta.mtime = now;
        pn.meta.ctime = now;
        if is_dir {
            pn.meta.nlink = pn.meta.nlink.saturating_sub(1);
        }
        let n = self.node_mut(ino)?;
        n.meta.nlink = if is_dir {
            0
        } else {
            n.meta.nlink.saturating_sub(1)
        };
        n.meta.ctime = now;
        let recs = vec![
            Rec::Remove(parent, name.to_vec()),
            self.meta_rec(parent),
            self.meta_rec(ino),
        ];
        self.log(recs)
    }

    /// Is `ancestor` the directory `ino` or one of its ancestors?
    fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            match self.nodes.get(&ino) {
                Some(n) if n.meta.parent != ino => ino = n.meta.parent,
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
        let src_dir = self.node(src)?.meta.kind == Kind::Dir;
        if src_dir && self.is_ancestor(src, newparent) {
            return Err(FsError::Invalid);
        }
        let now = Time::now();
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (RenameMode::Exchange, Some(dst)) => {
                let dst_dir = self.node(dst)?.meta.kind == Kind::Dir;
                if dst_dir && self.is_ancestor(dst, parent) {
                    return Err(FsError::Invalid);
                }
                self.node_mut(parent)?.children.insert(name.to_vec(), dst);
                self.node_mut(newparent)?
                    .children
                    .insert(newname.to_vec(), src);
                if parent != newparent {
                    self.reparent(src, src_dir, parent, newparent)?;
                    self.reparent(dst, dst_dir, newparent, parent)?;
                }
                for i in [src, dst, parent, newparent] {
                    self.node_mut(i)?.meta.ctime = now;
                }
                for i in [parent, newparent] {
                    self.node_mut(i)?.meta.mtime = now;
                }
                let recs = vec![
                    Rec::Add(parent, name.to_vec(), dst),
                    Rec::Add(newparent, newname.to_vec(), src),
                    self.meta_rec(src),
                    self.meta_rec(dst),
                    self.meta_rec(parent),
                    self.meta_rec(newparent),
                ];
                return self.log(recs);
            }
            (_, Some(dst)) if dst == src => return Ok(()),
            (_, Some(dst)) => {
                let d = self.node(dst)?;
                let dst_dir = d.meta.kind == Kind::Dir;
                if src_dir && !dst_dir {
                    return Err(FsError::NotDir);
                }
                if !src_dir && dst_dir {
                    return Err(FsError::IsDir);
                }
                if dst_dir && !d.children.is_empty() {
                    return Err(FsError::NotEmpty);
                }
                self.detach(newparent, newname, dst)?;
                self.maybe_free(dst)?;
            }
            (_, None) => {}
        }
        self.node_mut(parent)?.children.remove(name);
        self.node_mut(newparent)?
            .children
            .insert(newname.to_vec(), src);
        if parent != newparent {
            self.reparent(src, src_dir, parent, newparent)?;
        }
        self.node_mut(src)?.meta.ctime = now;
        for i in [parent, newparent] {
            let m = &mut self.node_mut(i)?.meta;
            m.mtime = now;
            m.ctime = now;
        }
        let recs = vec![
            Rec::Remove(parent, name.to_vec()),
            Rec::Add(newparent, newname.to_vec(), src),
            self.meta_rec(src),
            self.meta_rec(parent),
            self.meta_rec(newparent),
        ];
        self.log(recs)
    }

    fn reparent(&mut self, ino: Ino, is_dir: bool, from: Ino, to: Ino) -> FsResult<()> {
        if is_dir {
            self.node_mut(ino)?.meta.parent = to;
            let f = self.node_mut(from)?;
            f.meta.nlink = f.meta.nlink.saturating_sub(1);
            self.node_mut(to)?.meta.nlink += 1;
        }
        Ok(())
    }

    /// A new name for an existing non-directory inode.
    pub fn link(&mut self, ino: Ino, newparent: Ino, newname: &[u8]) -> FsResult<Attr> {
        check_name(newname)?;
        let n = self.node(ino)?;
        if n.meta.kind == Kind::Dir {
            return Err(FsError::NotPermitted);
        }
        if n.meta.nlink >= LINK_MAX {
            return Err(FsError::TooManyLinks);
        }
        if self.child(newparent, newname)?.is_some() {
            return Err(FsError::Exists);
        }
        let now = Time::now();
        let n = self.node_mut(ino)?;
        n.meta.nlink += 1;
        n.meta.ctime = now;
        n.lookups += 1;
        let p = self.node_mut(newparent)?;
        p.children.insert(newname.to_vec(), ino);
        p.meta.mtime = now;
        p.meta.ctime = now;
        let recs = vec![
            Rec::Add(newparent, newname.to_vec(), ino),
            self.meta_rec(ino),
            self.meta_rec(newparent),
        ];
        self.log(recs)?;
        self.attr(ino)
    }

    /// Copy a shared file into the private area (or, with `copy` false, replace it
    /// by an empty private file because it is about to be truncated to zero).
    fn make_private(&mut self, ino: Ino, copy: bool) -> FsResult<()> {
        let Data::Shared(hash) = self.node(ino)?.meta.data.clone() else {
            return Ok(());
        };
        let dest = self.data_path(ino);
        let tmp = self.data_dir.join(format!("{ino}.copy"));
        let out = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        if copy {
            let src = crate::store::export::open_object(&self.store, &hash)?;
            let size = src.metadata()?.len();
            let segs = fsutil::data_segments(&src, size)?;
            fsutil::copy_segments(&src, &out, &segs, size)?;
        }
        out.sync_data()?;
        fs::rename(&tmp, &dest)?;
        let n = self.node_mut(ino)?;
        n.meta.data = Data::Private;
        if !copy {
            n.meta.size = 0;
        }
        n.backing = None;
        let rec = self.meta_rec(ino);
        self.log(vec![rec])
    }

    /// Open a regular file: copies it up first when opened for writing. Returns
    /// whether its content is now the container's own; [`Tree::backing`] gives the
    /// file itself (opened only when needed).
    pub fn open(&mut self, ino: Ino, write: bool, truncate: bool) -> FsResult<bool> {
        let kind = self.node(ino)?.meta.kind;
        if kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if kind != Kind::File {
            return Err(FsError::Invalid);
        }
        if write {
            self.make_private(ino, !truncate)?;
        }
        self.node_mut(ino)?.opens += 1;
        self.is_private(ino)
    }

    /// The open file holding an inode's content (object read-only, or private
    /// file read-write), opened on first use.
    pub fn backing(&mut self, ino: Ino) -> FsResult<Arc<File>> {
        if let Some(f) = &self.node(ino)?.backing {
            return Ok(f.clone());
        }
        let f = match self.node(ino)?.meta.data.clone() {
            Data::Shared(h) => crate::store::export::open_object(&self.store, &h)?,
            Data::Private => {
                let p = self.data_path(ino);
                OpenOptions::new().read(true).write(true).open(&p)?
            }
            _ => return Err(FsError::Invalid),
        };
        let f = Arc::new(f);
        self.node_mut(ino)?.backing = Some(f.clone());
        Ok(f)
    }

    /// The private backing file for writing; copies up if still shared.
    pub fn writable(&mut self, ino: Ino) -> FsResult<Arc<File>> {
        self.make_private(ino, true)?;
        self.backing(ino)
    }

    /// Record that bytes up to `end` were written.
    pub fn wrote(&mut self, ino: Ino, end: u64) -> FsResult<()> {
        let now = Time::now();
        let n = self.node_mut(ino)?;
        n.meta.size = n.meta.size.max(end);
        n.meta.mtime = now;
        n.meta.ctime = now;
        n.attr_dirty = true;
        Ok(())
    }

    /// A handle was closed.
    pub fn release(&mut self, ino: Ino) -> FsResult<()> {
        if self.is_private(ino)? {
            // Writes may have gone straight to the data file (passthrough).
            let a = self.attr(ino)?;
            let n = self.node_mut(ino)?;
            if n.meta.size != a.meta.size || n.meta.mtime != a.meta.mtime {
                n.meta.size = a.meta.size;
                n.meta.mtime = a.meta.mtime;
                n.meta.ctime = a.meta.ctime;
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
        let mut recs = Vec::new();
        for i in inos {
            if let Some(n) = self.nodes.get_mut(&i).filter(|n| n.attr_dirty) {
                n.attr_dirty = false;
                recs.push(Rec::Meta(i, n.meta.clone()));
            }
        }
        if recs.is_empty() {
            return Ok(());
        }
        self.log(recs)
    }

    /// fsync of a file: its data (if private) and the journal.
    pub fn fsync(&mut self, ino: Ino) -> FsResult<()> {
        if self.node(ino)?.meta.data == Data::Private {
            self.backing(ino)?.sync_data()?;
        }
        self.flush_attrs(Some(ino))?;
        self.journal.sync()?;
        Ok(())
    }

    /// chmod, chown, truncate, utimens.
    pub fn setattr(&mut self, ino: Ino, s: SetAttr) -> FsResult<Attr> {
        let now = Time::now();
        if let Some(size) = s.size {
            if self.node(ino)?.meta.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            if self.node(ino)?.meta.kind != Kind::File {
                return Err(FsError::Invalid);
            }
            self.make_private(ino, size != 0)?;
            self.backing(ino)?.set_len(size)?;
            let m = &mut self.node_mut(ino)?.meta;
            m.size = size;
            m.mtime = now;
        }
        let m = &mut self.node_mut(ino)?.meta;
        if let Some(mode) = s.mode {
            m.mode = mode & 0o7777;
        }
        if let Some(uid) = s.uid {
            m.uid = uid;
        }
        if let Some(gid) = s.gid {
            m.gid = gid;
        }
        if let Some(a) = s.atime {
            m.atime = a.unwrap_or(now);
        }
        if let Some(t) = s.mtime {
            m.mtime = t.unwrap_or(now);
        }
        m.ctime = s.ctime.unwrap_or(now);
        let (atime, mtime) = (m.atime, m.mtime);
        if (s.atime.is_some() || s.mtime.is_some() || s.size.is_some()) && self.is_private(ino)? {
            // Keep the data file's times equal to the set ones (attr() takes the
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
        let rec = self.meta_rec(ino);
        self.log(vec![rec])?;
        self.attr(ino)
    }

    /// Value of one extended attribute.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
        self.node(ino)?
            .meta
            .xattrs
            .get(name)
            .cloned()
            .ok_or(FsError::NoAttr)
    }

    /// Names of all extended attributes, NUL-terminated, concatenated.
    pub fn listxattr(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let mut out = Vec::new();
        for k in self.node(ino)?.meta.xattrs.keys() {
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
        let m = &mut self.node_mut(ino)?.meta;
        let exists = m.xattrs.contains_key(name);
        match mode {
            XattrMode::Create if exists => return Err(FsError::Exists),
            XattrMode::Replace if !exists => return Err(FsError::NoAttr),
            _ => {}
        }
        m.xattrs.insert(name.to_vec(), value.to_vec());
        m.ctime = Time::now();
        let rec = self.meta_rec(ino);
        self.log(vec![rec])
    }

    /// Remove an extended attribute.
    pub fn removexattr(&mut self, ino: Ino, name: &[u8]) -> FsResult<()> {
        let m = &mut self.node_mut(ino)?.meta;
        if m.xattrs.remove(name).is_none() {
            return Err(FsError::NoAttr);
        }
        m.ctime = Time::now();
        let rec = self.meta_rec(ino);
        self.log(vec![rec])
    }

    /// Number of live inodes, for statfs.
    pub fn inode_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// The store this tree reads objects from.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn new_node(meta: Meta) -> Node {
    Node {
        meta,
        children: BTreeMap::new(),
        lookups: 0,
        opens: 0,
        backing: None,
        attr_dirty: false,
    }
}

/// The inodes of a base manifest (see the module doc for numbering). Consumes the
/// manifest so that names, targets and xattrs move instead of being copied: this
/// runs on every mount and dominates the mount time of large templates.
fn base_nodes(m: Manifest) -> NodeTable<Node> {
    let mut nodes: NodeTable<Node> = NodeTable::with_base_len(m.entries.len());
    let mut dirs: FastMap<Vec<u8>, Ino> = FastMap::default();
    let mut leaders: FastMap<u32, Ino> = FastMap::default();
    for (i, e) in m.entries.into_iter().enumerate() {
        let mut ino = i as Ino + 1;
        let is_root = e.path.is_empty();
        let slash = e.path.iter().rposition(|&b| b == b'/');
        let parent = if is_root {
            ROOT
        } else {
            let parent_path = slash.map_or(&b""[..], |p| &e.path[..p]);
            match dirs.get(parent_path) {
                Some(&p) => p,
                None => continue, // malformed manifest: orphan entry
            }
        };
        if e.link_group != 0 {
            match leaders.get(&e.link_group) {
                Some(&leader) => {
                    ino = leader;
                    if let Some(n) = nodes.get_mut(&leader) {
                        n.meta.nlink += 1;
                    }
                }
                None => {
                    leaders.insert(e.link_group, ino);
                }
            }
        }
        if e.kind == Kind::Dir {
            dirs.insert(e.path.clone(), ino);
            if let Some(p) = nodes.get_mut(&parent).filter(|_| !is_root) {
                p.meta.nlink += 1;
            }
        }
        if !nodes.contains_key(&ino) {
            let t = Time {
                sec: e.mtime_sec,
                nsec: e.mtime_nsec,
            };
            let data = match e.kind {
                Kind::File => e.hash.map_or(Data::None, Data::Shared),
                Kind::Symlink => Data::Symlink(e.target),
                _ => Data::None,
            };
            let meta = Meta {
                kind: e.kind,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                nlink: if e.kind == Kind::Dir { 2 } else { 1 },
                rdev: e.rdev,
                atime: t,
                mtime: t,
                ctime: t,
                xattrs: e.xattrs.into_iter().collect(),
                data,
                parent,
            };
            nodes.insert(ino, new_node(meta));
        }
        if !is_root {
            let mut name = e.path;
            if let Some(p) = slash {
                name.drain(..=p);
            }
            if let Some(pn) = nodes.get_mut(&parent) {
                pn.children.insert(name, ino);
            }
        }
    }
    nodes
}

/// What a container's tree holds, computed from its base and saved changes
/// without mounting it (read-only; fine while it is mounted).
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeUsage {
    /// Logical bytes of all regular files (each inode once).
    pub logical_bytes: u64,
    /// Logical bytes still served from shared objects.
    pub shared_bytes: u64,
    /// Logical bytes of the container's own (copied-up or new) files.
    pub own_bytes: u64,
}

/// Usage of a container tree: `base` plus the records in `private_dir`.
pub fn usage(base: Manifest, private_dir: &std::path::Path) -> crate::store::Result<TreeUsage> {
    let mut metas: HashMap<Ino, Meta> = base_nodes(base)
        .into_nodes()
        .map(|(i, n)| (i, n.meta))
        .collect();
    for r in crate::store::container::journal::read_records(private_dir)? {
        match r {
            Rec::Meta(i, m) => {
                metas.insert(i, m);
            }
            Rec::Drop(i) => {
                metas.remove(&i);
            }
            _ => {}
        }
    }
    let mut u = TreeUsage::default();
    for m in metas
        .values()
        .filter(|m| m.kind == Kind::File && m.nlink > 0)
    {
        u.logical_bytes += m.size;
        match m.data {
            Data::Shared(_) => u.shared_bytes += m.size,
            _ => u.own_bytes += m.size,
        }
    }
    Ok(u)
}
