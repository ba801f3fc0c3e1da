//! The tree that archive members build, for the tar and OCI sources. Members
//! come in archive order; this applies each the way an extraction would, but
//! only in memory, so nothing can be written outside the store:
//!
//! - names are made relative (a leading `/` is stripped, with one warning as
//!   GNU tar gives); a `..` component is an error naming the member;
//! - missing parents become directories (0755, root, the member's mtime); a
//!   parent that is a symlink is an error (a member written through a symlink
//!   would land outside the tree on extraction);
//! - a hardlink must name a non-directory member read before it;
//! - a later member replaces an earlier one of the same path (duplicates: the
//!   last wins, with a warning); a directory keeps its entries when replaced
//!   by a directory. A non-directory replacing a directory that holds entries
//!   is an error in an archive, and removes the subtree in an image layer (the
//!   OCI changeset rule);
//! - in layers, `.wh.NAME` removes NAME of lower layers and `.wh..wh..opq`
//!   empties its directory of lower layers' entries; a whiteout naming `.` or
//!   `..` is an error.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::PathBuf;

use crate::archive::read::{Member, MemberKind};
use crate::store::error::{Error, Result};
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind};
use limits::{NAME_MAX, PATH_MAX, check_entry};

mod limits;

/// How members relate to earlier ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One tar archive.
    Archive,
    /// OCI image layers, applied in order, with whiteouts.
    Layers,
}

struct Node {
    entry: Entry,
    /// The layer that wrote it (0 for a plain archive).
    layer: u32,
    /// A file whose hash is computed elsewhere: resolved by [`MemberTree::finish`].
    ticket: Option<u32>,
}

/// A regular file's content as the source hands it to [`MemberTree::insert`]:
/// its hash, or a ticket for a hash still being computed (on a worker thread).
#[derive(Clone, Copy, Debug)]
pub enum Content {
    Hash(Hash),
    Ticket(u32),
}

/// An in-memory tree of members.
pub struct MemberTree {
    nodes: BTreeMap<Vec<u8>, Node>,
    mode: Mode,
    layer: u32,
    next_group: u32,
    source: PathBuf,
    stripped: u64,
    duplicates: u64,
    tickets: u32,
}

/// What a member's name means for the tree.
pub enum Place {
    /// A path of the tree (the empty path is the root).
    Path(Vec<u8>),
    /// A whiteout, already applied (layers only).
    Whiteout,
}

impl MemberTree {
    pub fn new(mode: Mode, source: PathBuf) -> MemberTree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            Vec::new(),
            Node {
                entry: dir_entry(Vec::new(), 0),
                layer: 0,
                ticket: None,
            },
        );
        MemberTree {
            nodes,
            mode,
            layer: 0,
            next_group: 1,
            source,
            stripped: 0,
            duplicates: 0,
            tickets: 0,
        }
    }

    /// Start the next layer (layers only).
    pub fn next_layer(&mut self) {
        self.layer += 1;
    }

    fn refuse(&self, m: &Member, reason: impl std::fmt::Display) -> Error {
        Error::BadSource {
            path: self.source.clone(),
            reason: format!(
                "member {:?} (at byte {}): {reason}",
                m.display_name(),
                m.offset
            ),
        }
    }

    /// Where member `m` goes; applies whiteouts. Called before its data is
    /// read, so a refused member costs nothing.
    pub fn place(&mut self, m: &Member) -> Result<Place> {
        let path = self.normalize(m, &m.name, "name")?;
        if self.mode == Mode::Layers {
            let (parent, base) = split(&path);
            if parent.split(|&b| b == b'/').any(|c| c.starts_with(b".wh.")) {
                return Err(self.refuse(m, "a member under a whiteout name"));
            }
            if base == b".wh..wh..opq" {
                self.opaque(parent);
                return Ok(Place::Whiteout);
            }
            if base.starts_with(b".wh..wh.") {
                // aufs bookkeeping (`.wh..wh.plnk`, ...): not part of the tree.
                return Ok(Place::Whiteout);
            }
            if let Some(name) = base.strip_prefix(b".wh.") {
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(self.refuse(m, "a whiteout that names no entry, `.` or `..`"));
                }
                let victim = join(parent, name);
                self.whiteout(&victim);
                return Ok(Place::Whiteout);
            }
        }
        Ok(Place::Path(path))
    }

    /// A member's name (or a hardlink's target, `what`) as a clean relative
    /// path, within Linux's limits (no NUL, components of at most 255 bytes,
    /// at most 4095 bytes in all), or an error naming the member.
    fn normalize(&mut self, m: &Member, name: &[u8], what: &str) -> Result<Vec<u8>> {
        if name.first() == Some(&b'/') && what == "name" {
            self.stripped += 1;
        }
        if name.contains(&0) {
            return Err(self.refuse(m, format!("its {what} holds a NUL byte")));
        }
        let mut out = Vec::with_capacity(name.len().min(PATH_MAX));
        for c in name.split(|&b| b == b'/') {
            if c.len() > NAME_MAX {
                return Err(self.refuse(
                    m,
                    format!("its {what} has a component longer than {NAME_MAX} bytes"),
                ));
            }
            if out.len() + c.len() >= PATH_MAX {
                return Err(self.refuse(
                    m,
                    format!("its {what} is longer than {} bytes", PATH_MAX - 1),
                ));
            }
            match c {
                b"" | b"." => {}
                b".." => {
                    return Err(self.refuse(
                        m,
                        format!("its {what} holds `..`, which would escape the tree"),
                    ));
                }
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        Ok(out)
    }

    /// A new ticket for [`Content::Ticket`] (numbered from 0).
    pub fn ticket(&mut self) -> u32 {
        self.tickets += 1;
        self.tickets - 1
    }

    /// Add member `m` at `path` (from [`MemberTree::place`]); `content` is
    /// a regular file's.
    pub fn insert(&mut self, path: Vec<u8>, m: &Member, content: Option<Content>) -> Result<()> {
        if m.kind == MemberKind::File && content.is_none() {
            return Err(self.refuse(m, "a regular file without content"));
        }
        let (hash, mut ticket) = match content {
            Some(Content::Hash(h)) => (Some(h), None),
            Some(Content::Ticket(t)) => (None, Some(t)),
            None => (None, None),
        };
        if path.is_empty() {
            if m.kind != MemberKind::Dir {
                return Err(self.refuse(
                    m,
                    "it names the tree's root as something other than a directory",
                ));
            }
            let root = &mut self
                .nodes
                .get_mut(&path)
                .expect("the root is always present")
                .entry;
            set_meta(root, m);
            return Ok(());
        }
        self.parents(&path, m)?;
        let mut entry = match m.kind {
            MemberKind::Hardlink => {
                let (e, t) = self.link_entry(&path, m)?;
                ticket = t;
                e
            }
            _ => entry_of(&path, m, hash).map_err(|r| self.refuse(m, r))?,
        };
        check_entry(&entry).map_err(|r| self.refuse(m, r))?;
        if let Some(old) = self.nodes.get(&path) {
            if old.entry.kind == Kind::Dir && entry.kind == Kind::Dir {
                let old = &mut self.nodes.get_mut(&path).expect("checked").entry;
                set_meta(old, m);
                return Ok(());
            }
            if old.entry.kind == Kind::Dir && self.has_children(&path) {
                if self.mode == Mode::Archive {
                    return Err(self.refuse(m, "it replaces a directory that holds entries"));
                }
                self.remove_subtree(&path, u32::MAX);
            } else if self.mode == Mode::Archive {
                self.duplicates += 1;
            }
            if m.kind == MemberKind::Hardlink
                && self.nodes.get(&path).is_some_and(|n| {
                    n.entry.link_group == entry.link_group && entry.link_group != 0
                })
            {
                // A hardlink to itself: nothing changes.
                return Ok(());
            }
        }
        if entry.kind != Kind::Dir && m.kind != MemberKind::Hardlink {
            entry.link_group = 0;
        }
        self.nodes.insert(
            path,
            Node {
                entry,
                layer: self.layer,
                ticket,
            },
        );
        Ok(())
    }

    /// Every parent of `path` is a directory; missing ones are made.
    fn parents(&mut self, path: &[u8], m: &Member) -> Result<()> {
        let mut i = 0;
        while let Some(k) = path[i..].iter().position(|&b| b == b'/') {
            let p = &path[..i + k];
            match self.nodes.get(p).map(|n| n.entry.kind) {
                None => {
                    let mut d = dir_entry(p.to_vec(), m.mtime_sec);
                    d.mtime_nsec = m.mtime_nsec;
                    self.nodes.insert(
                        p.to_vec(),
                        Node {
                            entry: d,
                            layer: self.layer,
                            ticket: None,
                        },
                    );
                }
                Some(Kind::Dir) => {}
                Some(Kind::Symlink) => {
                    return Err(self.refuse(
                        m,
                        format!(
                            "its parent {:?} is a symlink; a member written through a symlink is refused",
                            String::from_utf8_lossy(p)
                        ),
                    ));
                }
                Some(_) => {
                    return Err(self.refuse(
                        m,
                        format!(
                            "its parent {:?} is not a directory",
                            String::from_utf8_lossy(p)
                        ),
                    ));
                }
            }
            i += k + 1;
        }
        Ok(())
    }

    /// The entry of a hardlink member (its target's, joined to its group)
    /// and the target's ticket.
    fn link_entry(&mut self, path: &[u8], m: &Member) -> Result<(Entry, Option<u32>)> {
        let target = self.normalize(m, &m.link.clone(), "link target")?;
        let group = match self
            .nodes
            .get(&target)
            .map(|n| (n.entry.kind, n.entry.link_group))
        {
            None => {
                return Err(self.refuse(
                    m,
                    format!(
                        "a hardlink to {:?}, which is not in the tree before it",
                        String::from_utf8_lossy(&m.link)
                    ),
                ));
            }
            Some((Kind::Dir, _)) => return Err(self.refuse(m, "a hardlink to a directory")),
            Some((_, 0)) => {
                let g = self.next_group;
                self.next_group += 1;
                self.nodes
                    .get_mut(&target)
                    .expect("checked")
                    .entry
                    .link_group = g;
                g
            }
            Some((_, g)) => g,
        };
        let node = &self.nodes[&target];
        let mut e = node.entry.clone();
        e.path = path.to_vec();
        e.link_group = group;
        Ok((e, node.ticket))
    }

    fn has_children(&self, dir: &[u8]) -> bool {
        self.children(dir).next().is_some()
    }

    /// Paths strictly under `dir`.
    fn children<'a>(&'a self, dir: &[u8]) -> impl Iterator<Item = (&'a Vec<u8>, &'a Node)> + 'a {
        self.nodes.range(bounds(dir))
    }

    /// Remove `path` and everything under it written before `below_layer`,
    /// but for the directories that lead to entries of later layers (a layer
    /// that writes `d/x/y` over a removed `d/x` has `d/x` as a directory).
    fn remove_subtree(&mut self, path: &[u8], below_layer: u32) {
        self.remove_lower(path, true, below_layer);
    }

    fn remove_lower(&mut self, root: &[u8], with_root: bool, below: u32) {
        let mut gone = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for (k, n) in self.nodes.range(bounds(root)) {
            if n.layer < below {
                gone.push(k.clone());
            } else {
                let mut p = k.as_slice();
                while let Some((parent, _)) = crate::store::manifest::split_path(p) {
                    keep.insert(parent.to_vec());
                    p = parent;
                }
            }
        }
        if with_root && !root.is_empty() && self.nodes.get(root).is_some_and(|n| n.layer < below) {
            gone.push(root.to_vec());
        }
        for k in gone {
            if !keep.contains(&k) {
                self.nodes.remove(&k);
            }
        }
    }

    /// `.wh.NAME`: NAME of lower layers goes.
    fn whiteout(&mut self, path: &[u8]) {
        if !path.is_empty() {
            self.remove_subtree(path, self.layer);
        }
    }

    /// `.wh..wh..opq`: lower layers' entries of `dir` go.
    fn opaque(&mut self, dir: &[u8]) {
        self.remove_lower(dir, false, self.layer);
    }

    /// The entries, sorted by path, hardlink groups numbered from 1 (a group
    /// left with one name is no group), and the warnings. `tickets[t]` is the
    /// hash of ticket `t` (a file whose ticket has none is left without a
    /// hash, which the pipeline refuses).
    pub fn finish(self, tickets: &[Option<Hash>]) -> (Vec<Entry>, Vec<String>) {
        let mut size: HashMap<u32, u32> = HashMap::new();
        for n in self.nodes.values() {
            if n.entry.link_group != 0 {
                *size.entry(n.entry.link_group).or_default() += 1;
            }
        }
        let mut renumber: HashMap<u32, u32> = HashMap::new();
        let mut entries = Vec::with_capacity(self.nodes.len());
        for (_, n) in self.nodes {
            let mut e = n.entry;
            if let Some(t) = n.ticket {
                e.hash = tickets.get(t as usize).copied().flatten();
            }
            if e.link_group != 0 {
                e.link_group = if size[&e.link_group] > 1 {
                    let next = renumber.len() as u32 + 1;
                    *renumber.entry(e.link_group).or_insert(next)
                } else {
                    0
                };
            }
            entries.push(e);
        }
        let mut warnings = Vec::new();
        if self.stripped > 0 {
            warnings.push(format!(
                "removed the leading `/` from {} member names",
                self.stripped
            ));
        }
        if self.duplicates > 0 {
            warnings.push(format!(
                "{} members appear more than once; the last of each was kept",
                self.duplicates
            ));
        }
        (entries, warnings)
    }
}

/// The key range of paths strictly under `dir` (after `dir/`, before `dir0`;
/// under the root: every other path).
fn bounds(dir: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    if dir.is_empty() {
        return (Bound::Excluded(Vec::new()), Bound::Unbounded);
    }
    (
        Bound::Included([dir, b"/"].concat()),
        Bound::Excluded([dir, b"0"].concat()),
    )
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn dir_entry(path: Vec<u8>, mtime: i64) -> Entry {
    Entry {
        path,
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_sec: mtime,
        mtime_nsec: 0,
        size: 0,
        hash: None,
        target: Vec::new(),
        rdev: 0,
        xattrs: Vec::new(),
        link_group: 0,
    }
}

fn set_meta(e: &mut Entry, m: &Member) {
    e.mode = m.mode;
    e.uid = m.uid;
    e.gid = m.gid;
    e.mtime_sec = m.mtime_sec;
    e.mtime_nsec = m.mtime_nsec;
    e.xattrs = sorted_xattrs(m);
}

fn sorted_xattrs(m: &Member) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x = m.xattrs.clone();
    x.sort();
    x
}

/// The manifest entry of a member that is not a hardlink.
fn entry_of(
    path: &[u8],
    m: &Member,
    hash: Option<Hash>,
) -> std::result::Result<Entry, &'static str> {
    let kind = match m.kind {
        MemberKind::File => Kind::File,
        MemberKind::Dir => Kind::Dir,
        MemberKind::Symlink => Kind::Symlink,
        MemberKind::CharDev => Kind::CharDev,
        MemberKind::BlockDev => Kind::BlockDev,
        MemberKind::Fifo => Kind::Fifo,
        MemberKind::Hardlink => unreachable!("hardlinks take their target's entry"),
    };
    let mut e = dir_entry(path.to_vec(), m.mtime_sec);
    e.kind = kind;
    set_meta(&mut e, m);
    match kind {
        Kind::File => {
            e.size = m.size;
            e.hash = hash;
        }
        Kind::Symlink => {
            if m.link.is_empty() {
                return Err("a symlink with an empty target");
            }
            e.target = m.link.clone();
            e.size = m.link.len() as u64;
        }
        Kind::CharDev | Kind::BlockDev => e.rdev = rustix::fs::makedev(m.dev_major, m.dev_minor),
        _ => {}
    }
    Ok(e)
}

#[cfg(test)]
mod tests;
