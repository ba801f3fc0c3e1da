//! A container's current file tree as a flat, sorted list of entries, read
//! without mounting it and without changing anything: what `rebase`, `commit`
//! and `dedup` work on, whatever the backend.
//!
//! Each entry is a manifest [`Entry`] (path, kind, metadata) plus where its
//! content is: a store object (`entry.hash` is `Some`), or the container's own
//! file (`private` names the file holding the bytes: `data/<ino>` of a FUSE
//! container, the upper file of a kernel container; `entry.hash` is `None`).
//! Names of one inode share a non-zero `inode`; their `link_group` is set as a
//! manifest's would be.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::container::base::base_nodes;
use crate::container::inode::{Content, Ino, Node, ROOT};
use crate::container::journal;
use crate::container::table::NodeTable;
use crate::container::tree::apply_record;
use crate::store::Result;
use crate::store::error::IoContext;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest};
pub use crate::store::report::TreeUsage;

/// Where a path of a merged tree comes from (see `lifecycle::merge`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Entry `i` of the new base manifest.
    Base(usize),
    /// Entry `i` of the container's view.
    Own(usize),
}

/// One path of a container's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewEntry {
    pub entry: Entry,
    /// The file holding a private file's bytes (`entry.hash` is `None` then).
    pub private: Option<PathBuf>,
    /// Identity of the inode: names with the same non-zero value are hardlinks.
    pub inode: u64,
}

/// A container's tree, entries sorted by path (parents before children).
#[derive(Clone, Debug, Default)]
pub struct View {
    pub entries: Vec<ViewEntry>,
}

impl View {
    /// Index of each path.
    pub fn index(&self) -> HashMap<&[u8], usize> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.entry.path.as_slice(), i))
            .collect()
    }

    /// Sort by path and number hardlink groups as a manifest does.
    pub fn finish(&mut self) {
        self.entries.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
        let mut names: HashMap<u64, u32> = HashMap::new();
        for e in &self.entries {
            if e.inode != 0 && e.entry.kind != Kind::Dir {
                *names.entry(e.inode).or_default() += 1;
            }
        }
        let mut groups: HashMap<u64, u32> = HashMap::new();
        for e in &mut self.entries {
            e.entry.link_group = 0;
            if e.entry.kind != Kind::Dir && names.get(&e.inode).is_some_and(|&n| n > 1) {
                let next = groups.len() as u32 + 1;
                e.entry.link_group = *groups.entry(e.inode).or_insert(next);
            }
        }
    }

    /// Private files: (entry index, file holding the bytes).
    pub fn private_files(&self) -> impl Iterator<Item = (usize, &Path)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.private.as_deref().map(|p| (i, p)))
    }

    /// This view with the files of the inodes in `by_inode` (every name)
    /// referring to those objects instead of private files.
    pub fn with_shared(&self, by_inode: &HashMap<u64, Hash>) -> View {
        let mut out = self.clone();
        for e in &mut out.entries {
            if let Some(&h) = by_inode.get(&e.inode)
                && e.entry.kind == Kind::File
            {
                e.private = None;
                e.entry.hash = Some(h);
            }
        }
        out
    }

    /// Objects the view refers to.
    pub fn objects(&self) -> impl Iterator<Item = (Hash, u64)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.entry.hash.map(|h| (h, e.entry.size)))
    }
}

/// Same metadata (not content). Directories ignore their mtime (it follows
/// from their entries).
pub fn same_meta(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.xattrs == b.xattrs
        && a.rdev == b.rdev
        && a.target == b.target
        && (a.kind == Kind::Dir || (a.mtime_sec, a.mtime_nsec) == (b.mtime_sec, b.mtime_nsec))
}

/// A container's entry equals a base entry, without reading any file (a
/// private file never does).
pub fn same_as(c: &ViewEntry, b: &Entry) -> bool {
    c.private.is_none()
        && same_meta(&c.entry, b)
        && c.entry.hash == b.hash
        && c.entry.size == b.size
}

/// What a container's tree holds against its base, for `report`: logical
/// and shared file bytes (each inode once) and the paths that differ from the
/// base (changed, added or removed).
pub fn usage(view: &View, base: &Manifest) -> TreeUsage {
    let mut u = TreeUsage::default();
    let mut seen = std::collections::HashSet::new();
    let at: HashMap<&[u8], &Entry> = base
        .entries
        .iter()
        .map(|e| (e.path.as_slice(), e))
        .collect();
    for v in &view.entries {
        if v.entry.kind == Kind::File && seen.insert(v.inode) {
            u.logical_bytes += v.entry.size;
            if v.entry.hash.is_some() {
                u.shared_bytes += v.entry.size;
            }
        }
        if at
            .get(v.entry.path.as_slice())
            .is_none_or(|b| !same_as(v, b))
        {
            u.changed_paths += 1;
        }
    }
    let here = view.index();
    u.changed_paths += base
        .entries
        .iter()
        .filter(|e| !here.contains_key(e.path.as_slice()))
        .count() as u64;
    u
}

/// The view of a FUSE container: `base` with the records of `private_dir`
/// (snapshot and journal; a torn tail ignored) applied, as a load would see it.
/// Sizes and mtimes of private files come from their data files, as a mount
/// serves them.
pub fn fuse_view(base: Manifest, private_dir: &Path) -> Result<View> {
    let mut next: Ino = base.entries.len() as Ino + 1;
    let mut nodes = base_nodes(base);
    for r in journal::read_records(private_dir)? {
        apply_record(&mut nodes, &mut next, r);
    }
    let data = private_dir.join("data");
    let mut view = View::default();
    walk(&nodes, ROOT, Vec::new(), &data, &mut view)?;
    view.finish();
    Ok(view)
}

fn walk(
    nodes: &NodeTable<Node>,
    ino: Ino,
    path: Vec<u8>,
    data: &Path,
    view: &mut View,
) -> Result<()> {
    // An explicit stack: containers nest deeper than the thread's stack allows.
    let mut stack = vec![(ino, path)];
    while let Some((ino, path)) = stack.pop() {
        let Some(n) = nodes.get(&ino) else { continue };
        let a = &n.attrs;
        let mut entry = Entry {
            path: path.clone(),
            kind: a.kind,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            mtime_sec: a.mtime.sec,
            mtime_nsec: a.mtime.nsec,
            size: 0,
            hash: None,
            target: Vec::new(),
            rdev: a.rdev,
            xattrs: a
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            link_group: 0,
        };
        let mut private = None;
        match &a.content {
            Content::Shared(h) => {
                entry.hash = Some(*h);
                entry.size = a.size;
            }
            Content::Private => {
                let p = data.join(ino.to_string());
                // As a load serves it: the data file's size, the later mtime; a
                // missing file is an empty one.
                match fs::symlink_metadata(&p) {
                    Ok(m) => {
                        entry.size = m.len();
                        if (m.mtime(), m.mtime_nsec() as u32) > (entry.mtime_sec, entry.mtime_nsec)
                        {
                            entry.mtime_sec = m.mtime();
                            entry.mtime_nsec = m.mtime_nsec() as u32;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at(&p),
                }
                private = Some(p);
            }
            Content::Symlink(t) => {
                entry.size = t.len() as u64;
                entry.target = t.clone();
            }
            Content::None => {}
        }
        if a.kind == Kind::Dir {
            for (name, &child) in &n.children {
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                stack.push((child, p));
            }
        }
        view.entries.push(ViewEntry {
            entry,
            private,
            inode: ino,
        });
    }
    Ok(())
}

/// Hash of a private file: from `known` (hashed earlier in the same
/// command), else read.
pub fn hash_known(known: &HashMap<PathBuf, Hash>, path: &Path) -> Result<Hash> {
    match known.get(path) {
        Some(h) => Ok(*h),
        None => hash_private(path).map(|(h, _)| h),
    }
}

/// Hash of a private file's bytes (holes read as zeros without reading them).
pub fn hash_private(path: &Path) -> Result<(Hash, u64)> {
    let f = fs::File::open(path).at(path)?;
    let size = f.metadata().at(path)?.len();
    let segs = crate::store::fsutil::data_segments(&f, size).at(path)?;
    let h = crate::store::fsutil::hash_segments(&f, &segs, size).at(path)?;
    Ok((Hash::from(h), size))
}
