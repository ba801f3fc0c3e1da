//! The live file tree of a mounted container: its base manifest turned into
//! inodes (see [`crate::container::base`]), with the container's own changes
//! applied, and every operation a root file system needs. No mount types here.
//!
//! Content of a regular file is either `Shared` (an object of the store, checked
//! and opened read-only, never written) or `Private` (`private/<CT>/data/<ino>`,
//! the container's own file). The first write or truncate of a shared file copies
//! it into the private area (copy-up, [`content`]); metadata changes (chmod,
//! chown, utimes, xattrs) only change the inode, so the content stays shared.
//!
//! Every change follows one rule: build the journal records that describe it,
//! append them, and only then apply them to the live tree with the same code that
//! replays them at load ([`Tree::commit`]). An operation whose records cannot be
//! written fails and leaves no trace, and the live tree always equals what a
//! remount would load.
//!
//! Lookup counts follow the FUSE rules (lookup/create/mkdir/mknod/symlink/link add
//! one, forget removes); an unlinked inode lives on while it is looked up or open.
//!
//! The files: [`names`] (lookup, create, unlink, rename, link, readdir),
//! [`content`] (open, copy-up, backing files, sizes), [`attrs`] (setattr, xattrs).

mod attrs;
pub mod content;
mod names;

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use crate::container::base::base_nodes;
use crate::container::error::{FsError, FsResult};
use crate::container::inode::{Content, Ino, Node, ROOT, Stat};
use crate::container::journal::{Journal, Record};
use crate::container::table::NodeTable;
use crate::store::Store;
use crate::store::error::IoContext;
use crate::store::integrity::ObjectChecker;
use crate::store::manifest::{Kind, Manifest};

/// Apply one record to an inode table: the one meaning of a record, for the
/// live tree and for read-only views ([`crate::container::view`]). Returns the
/// inode the record changed, if any.
pub(crate) fn apply_record(
    nodes: &mut NodeTable<Node>,
    next_ino: &mut Ino,
    r: Record,
) -> Option<Ino> {
    match r {
        Record::Inode(ino, attrs) => {
            match nodes.get_mut(&ino) {
                Some(n) => n.attrs = attrs,
                None => {
                    nodes.insert(ino, Node::new(attrs));
                }
            }
            Some(ino)
        }
        Record::Children(ino, children) => {
            if let Some(n) = nodes.get_mut(&ino) {
                n.children = children;
            }
            Some(ino)
        }
        Record::Add(dir, name, ino) => {
            if let Some(n) = nodes.get_mut(&dir) {
                n.children.insert(name, ino);
            }
            Some(dir)
        }
        Record::Remove(dir, name) => {
            if let Some(n) = nodes.get_mut(&dir) {
                n.children.remove(&name);
            }
            Some(dir)
        }
        Record::Drop(ino) => {
            nodes.remove(&ino);
            Some(ino)
        }
        Record::NextIno(n) => {
            *next_ino = (*next_ino).max(n);
            None
        }
    }
}

/// Compact the journal once it grows beyond this.
const COMPACT_AT: u64 = 64 << 20;

/// The tree of one mounted container.
pub struct Tree {
    store: Store,
    /// `template@version` of the base, for messages.
    base_label: String,
    data_dir: PathBuf,
    nodes: NodeTable<Node>,
    next_ino: Ino,
    journal: Journal,
    /// Inodes changed since the base: what a snapshot must hold.
    dirty: HashSet<Ino>,
    /// Names were created in `data/` since it was last synced.
    data_dir_dirty: bool,
    checker: Arc<ObjectChecker>,
    /// Objects already reported as refused (each is logged once).
    refused: HashSet<crate::store::Hash>,
}

impl Tree {
    /// Build the tree of a container from its base manifest and its saved changes
    /// in `private_dir` (which holds `state`, `journal` and `data/`).
    pub fn load(
        store: &Store,
        base_label: &str,
        base: Manifest,
        private_dir: PathBuf,
        checker: Arc<ObjectChecker>,
    ) -> crate::store::Result<Tree> {
        let data_dir = private_dir.join("data");
        crate::store::fsutil::create_private_dir(&data_dir).at(&data_dir)?;
        let t0 = std::time::Instant::now();
        let next_ino = base.entries.len() as Ino + 1;
        let nodes = base_nodes(base);
        log::info!("base inodes: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
        let (journal, recs) = Journal::open(&private_dir)?;
        let mut tree = Tree {
            store: store.clone(),
            base_label: base_label.to_string(),
            data_dir,
            next_ino,
            nodes,
            journal,
            dirty: HashSet::new(),
            data_dir_dirty: false,
            checker,
            refused: HashSet::new(),
        };
        for r in recs {
            tree.apply(r);
        }
        let cleaned = tree.cleanup_after_load()?;
        // A clean unmount leaves an empty journal: nothing to compact then. A
        // failed compaction (a full disk) is no reason not to serve: the journal
        // still holds every change.
        if (cleaned || !tree.journal.is_empty())
            && let Err(e) = tree.compact()
        {
            log::warn!("compacting the container state at load: {e}");
        }
        Ok(tree)
    }

    /// Apply one record to the live tree (at load, and after it is journaled).
    fn apply(&mut self, r: Record) {
        if let Some(ino) = apply_record(&mut self.nodes, &mut self.next_ino, r) {
            self.dirty.insert(ino);
        }
    }

    /// Journal `recs`, then apply them. On error nothing changed.
    fn commit(&mut self, recs: Vec<Record>) -> FsResult<()> {
        self.journal.append(&recs)?;
        for r in recs {
            self.apply(r);
        }
        if self.journal.len() > COMPACT_AT
            && let Err(e) = self.compact()
        {
            // The records are in the journal; compaction is retried later.
            log::warn!("compacting the container journal: {e}");
        }
        Ok(())
    }

    /// After a restart nothing is open: drop unlinked inodes, remove data files
    /// that no inode owns, and take private file sizes from the files themselves
    /// (writes reach the file before their size reaches the journal). A private
    /// inode whose data file is missing (lost in a power failure before it was
    /// synced) is reported and becomes an empty file rather than garbage.
    fn cleanup_after_load(&mut self) -> crate::store::Result<bool> {
        let mut changed = false;
        let orphans: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.attrs.nlink == 0)
            .map(|(i, _)| i)
            .collect();
        for ino in orphans {
            self.nodes.remove(&ino);
            self.dirty.insert(ino);
            changed = true;
        }
        let mut seen = HashSet::new();
        for e in fs::read_dir(&self.data_dir).at(&self.data_dir)? {
            let e = e.at(&self.data_dir)?;
            let owned = e
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<Ino>().ok())
                .filter(|ino| {
                    self.nodes
                        .get(ino)
                        .is_some_and(|n| n.attrs.content == Content::Private)
                });
            match owned {
                Some(ino) => {
                    seen.insert(ino);
                    let len = e.metadata().at(e.path())?.len();
                    if let Some(n) = self.nodes.get_mut(&ino)
                        && n.attrs.size != len
                    {
                        if len < n.attrs.size {
                            log::warn!(
                                "container file inode {ino}: data file holds {len} of {} bytes (writes lost before they were synced); serving {len} bytes",
                                n.attrs.size
                            );
                        }
                        n.attrs.size = len;
                        self.dirty.insert(ino);
                        changed = true;
                    }
                }
                None => {
                    fs::remove_file(e.path()).at(e.path())?;
                    changed = true;
                }
            }
        }
        let lost: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(i, n)| n.attrs.content == Content::Private && !seen.contains(i))
            .map(|(i, _)| i)
            .collect();
        for ino in lost {
            let path = self.path_of(ino);
            log::error!(
                "container file {} (inode {ino}): its data file is missing (lost before it was synced); it is now empty",
                String::from_utf8_lossy(&path)
            );
            let p = self.data_path(ino);
            fs::File::create(&p).at(&p)?;
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.attrs.size = 0;
            }
            self.dirty.insert(ino);
            changed = true;
        }
        Ok(changed)
    }

    /// Write the full set of changes as the new snapshot and empty the journal.
    /// On failure the previous snapshot and journal stay loadable.
    pub fn compact(&mut self) -> crate::store::Result<()> {
        self.sync_data_dir()?;
        let mut recs = vec![Record::NextIno(self.next_ino)];
        let mut dirty: Vec<Ino> = self.dirty.iter().copied().collect();
        dirty.sort_unstable();
        for &ino in &dirty {
            match self.nodes.get(&ino) {
                Some(n) => {
                    recs.push(Record::Inode(ino, n.attrs.clone()));
                    if n.attrs.kind == Kind::Dir {
                        recs.push(Record::Children(ino, n.children.clone()));
                    }
                }
                None => recs.push(Record::Drop(ino)),
            }
        }
        self.journal.compact(&recs)?;
        log::info!("container state saved ({} records)", recs.len());
        for ino in dirty {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.attr_dirty = false;
            }
        }
        Ok(())
    }

    /// Whether anything changed since the last compaction (unmount skips the
    /// snapshot write when nothing did).
    pub fn has_unsaved_changes(&self) -> bool {
        !self.journal.is_empty() || self.data_dir_dirty
    }

    /// Make new names in `data/` durable before any journal sync that names them.
    fn sync_data_dir(&mut self) -> crate::store::Result<()> {
        if self.data_dir_dirty {
            crate::store::fsutil::sync_dir(&self.data_dir).at(&self.data_dir)?;
            self.data_dir_dirty = false;
        }
        Ok(())
    }

    /// Journal pending size/time changes and flush the journal to disk.
    pub fn sync(&mut self) -> FsResult<()> {
        self.flush_attrs(None)?;
        self.sync_data_dir()?;
        self.journal.sync()?;
        Ok(())
    }

    fn node(&self, ino: Ino) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(FsError::Stale)
    }

    fn node_mut(&mut self, ino: Ino) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(FsError::Stale)
    }

    fn dir(&self, ino: Ino) -> FsResult<&Node> {
        let n = self.node(ino)?;
        if n.attrs.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(n)
    }

    /// Attributes of an inode. For the container's own files, size and times
    /// come from the data file too: with FUSE passthrough the kernel writes to it
    /// directly and the daemon never sees those writes.
    pub fn stat(&self, ino: Ino) -> FsResult<Stat> {
        let n = self.node(ino)?;
        let mut st = Stat::of(ino, &n.attrs);
        if n.attrs.content == Content::Private {
            let meta = match &n.backing {
                Some(f) => f.metadata(),
                None => fs::metadata(self.data_path(ino)),
            };
            if let Ok(m) = meta {
                use std::os::unix::fs::MetadataExt;
                st.size = m.len();
                st.blocks = m.blocks();
                let mtime = crate::store::time::Time {
                    sec: m.mtime(),
                    nsec: m.mtime_nsec() as u32,
                };
                let ctime = crate::store::time::Time {
                    sec: m.ctime(),
                    nsec: m.ctime_nsec() as u32,
                };
                st.mtime = st.mtime.max(mtime);
                st.ctime = st.ctime.max(ctime);
            }
        }
        Ok(st)
    }

    /// A path of `ino` in the tree (for messages; the first name found). Walks
    /// the whole tree: only for rare events such as a refused object.
    pub fn path_of(&self, ino: Ino) -> Vec<u8> {
        let mut stack = vec![(ROOT, Vec::new())];
        while let Some((dir, path)) = stack.pop() {
            let Some(n) = self.nodes.get(&dir) else {
                continue;
            };
            for (name, &child) in &n.children {
                let mut p = path.clone();
                p.push(b'/');
                p.extend_from_slice(name);
                if child == ino {
                    return p;
                }
                if self
                    .nodes
                    .get(&child)
                    .is_some_and(|c| c.attrs.kind == Kind::Dir)
                {
                    stack.push((child, p));
                }
            }
        }
        format!("<inode {ino}>").into_bytes()
    }

    /// Number of live inodes, for statfs.
    pub fn inode_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// The store this tree reads objects from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn data_path(&self, ino: Ino) -> PathBuf {
        self.data_dir.join(ino.to_string())
    }
}
