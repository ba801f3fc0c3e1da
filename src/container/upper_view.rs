//! A kernel container's view: its base manifest with its overlayfs upper
//! directory laid over it, read the way overlayfs reads it (measured on 6.18,
//! see ../shared/notes/kernel-overlay.md and ARCHITECTURE.md):
//!
//! - a 0:0 character device is a whiteout (the path is gone);
//! - a directory with `trusted.overlay.opaque=y` hides the template's entries;
//!   one with `trusted.overlay.redirect` shows the entries of the template
//!   directory it names (absolute `/a/b`, or a name in the same parent);
//! - a regular file with `trusted.overlay.metacopy` has the upper's metadata
//!   and the bytes of the template file at its redirect (or its own path);
//!   any other upper file holds its own bytes (a private file);
//! - an upper file carrying `trusted.overlay.nlink` is a copied-up template
//!   hardlink: the group's names still only in the template are that inode too;
//! - other `trusted.overlay.*` xattrs are overlayfs's own; the template's own
//!   are stored escaped as `trusted.overlay.overlay.*`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::container::upper::upper_dir;
use crate::container::view::{View, ViewEntry};
use crate::store::Result;
use crate::store::error::IoContext;
use crate::store::fstree::{self, Walk};
use crate::store::fsutil;
use crate::store::manifest::{Entry, Kind, Manifest, split_path};

const OVL: &[u8] = b"trusted.overlay.";
const ESCAPED: &[u8] = b"trusted.overlay.overlay.";
/// Inode identities of template entries (upper inodes use their st_ino).
const LOWER_ID: u64 = 1 << 62;
const LOWER_GROUP: u64 = 1 << 61;

/// The template's tree by path, with each directory's children.
struct Lower<'a> {
    by_path: HashMap<&'a [u8], usize>,
    children: HashMap<&'a [u8], Vec<usize>>,
    m: &'a Manifest,
}

impl<'a> Lower<'a> {
    fn new(m: &'a Manifest) -> Lower<'a> {
        let mut by_path = HashMap::new();
        let mut children: HashMap<&[u8], Vec<usize>> = HashMap::new();
        for (i, e) in m.entries.iter().enumerate() {
            by_path.insert(e.path.as_slice(), i);
            if let Some((parent, _)) = split_path(&e.path) {
                children.entry(parent).or_default().push(i);
            }
        }
        Lower {
            by_path,
            children,
            m,
        }
    }

    fn get(&self, p: &[u8]) -> Option<&'a Entry> {
        self.by_path.get(p).map(|&i| &self.m.entries[i])
    }

    /// Identity of a template entry (one per hardlink group).
    fn id(&self, e: &Entry) -> u64 {
        if e.link_group != 0 {
            LOWER_ID | LOWER_GROUP | u64::from(e.link_group)
        } else {
            LOWER_ID | self.by_path.get(e.path.as_slice()).map_or(0, |&i| i as u64)
        }
    }
}

/// Template xattrs as a container sees them: overlayfs's own left out, the
/// escaped ones restored.
pub(crate) fn visible_xattrs(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = raw
        .into_iter()
        .filter_map(|(n, v)| {
            if let Some(rest) = n.strip_prefix(ESCAPED) {
                Some(([OVL, rest].concat(), v))
            } else if n.starts_with(OVL) {
                None
            } else {
                Some((n, v))
            }
        })
        .collect();
    out.sort();
    out
}

fn xattr(raw: &[(Vec<u8>, Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    raw.iter()
        .find(|(n, _)| n.as_slice() == name.as_bytes())
        .map(|(_, v)| v.clone())
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// Where a redirect points: absolute (`/a/b`) or a name beside `lower_parent`.
fn redirect_target(v: &[u8], lower_parent: Option<&[u8]>) -> Option<Vec<u8>> {
    match v.strip_prefix(b"/") {
        Some(abs) => Some(abs.to_vec()),
        None => lower_parent.map(|p| join(p, v)),
    }
}

/// The view of a kernel container whose base is `base`. The upper directory
/// is walked relative to open directories (a container may nest deeper than
/// PATH_MAX); the `private` paths of very deep files may be too long to open
/// later, which then fails naming them.
pub fn view(base: &Manifest, private: &Path) -> Result<View> {
    let lower = Lower::new(base);
    let upper = upper_dir(private);
    let mut view = View::default();
    let root_meta = std::fs::symlink_metadata(&upper).at(&upper)?;
    let root_raw = fsutil::read_xattrs(&upper).at(&upper)?;
    view.entries.push(entry_of(
        Vec::new(),
        Kind::Dir,
        &stat_of(&root_meta),
        root_raw,
        Vec::new(),
        None,
    ));
    // Per merged directory (by path in the view): the template directory it
    // shows, and the names its upper directory holds (whiteouts included).
    let mut merged: HashMap<Vec<u8>, Option<Vec<u8>>> =
        HashMap::from([(Vec::new(), Some(Vec::new()))]);
    let mut named: HashMap<Vec<u8>, HashSet<Vec<u8>>> = HashMap::new();
    // Copied-up template hardlink groups: group -> the upper inode's entry.
    let mut groups: HashMap<u32, ViewEntry> = HashMap::new();
    fstree::walk(&upper, &mut |n| {
        let (parent, name) = split_path(n.rel).unwrap_or((&b""[..], n.rel));
        named
            .entry(parent.to_vec())
            .or_default()
            .insert(name.to_vec());
        let ldir = merged.get(parent).cloned().flatten();
        let lp = ldir.as_ref().map(|d| join(d, name));
        let st = stat_from(n.stat);
        let kind = kind_of(n.stat.st_mode);
        if kind == Kind::CharDev && st.rdev == 0 {
            return Ok(Walk::Skip); // a whiteout
        }
        let sp = n.short_path();
        let raw = fsutil::read_xattrs(&sp)?;
        let redirect = xattr(&raw, "trusted.overlay.redirect")
            .and_then(|r| redirect_target(&r, ldir.as_deref()));
        if kind == Kind::Dir {
            let shows = if xattr(&raw, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                None
            } else {
                redirect.or(lp)
            }
            .filter(|p| lower.get(p).is_some_and(|e| e.kind == Kind::Dir));
            merged.insert(n.rel.to_vec(), shows);
            view.entries
                .push(entry_of(n.rel.to_vec(), kind, &st, raw, Vec::new(), None));
            return Ok(Walk::Enter);
        }
        let target = if kind == Kind::Symlink {
            std::fs::read_link(&sp)?.as_os_str().as_bytes().to_vec()
        } else {
            Vec::new()
        };
        let meta = xattr(&raw, "trusted.overlay.metacopy").is_some();
        let nlink = xattr(&raw, "trusted.overlay.nlink").is_some();
        let src = redirect.or(lp);
        let file = (kind == Kind::File).then(|| upper.join(OsStr::from_bytes(n.rel)));
        let mut ve = entry_of(n.rel.to_vec(), kind, &st, raw, target, file);
        if kind == Kind::File && meta {
            match src
                .as_deref()
                .and_then(|p| lower.get(p))
                .filter(|e| e.kind == Kind::File)
            {
                Some(le) => {
                    ve.entry.hash = le.hash;
                    ve.entry.size = le.size;
                    ve.private = None;
                }
                // Its data is nowhere: overlayfs would serve nothing.
                None => ve.entry.size = 0,
            }
        }
        if kind == Kind::File
            && nlink
            && let Some(le) = src.as_deref().and_then(|p| lower.get(p))
            && le.link_group != 0
        {
            groups.insert(le.link_group, ve.clone());
        }
        view.entries.push(ve);
        Ok(Walk::Enter)
    })
    .at(&upper)?;
    // Template entries of each merged directory that its upper directory does
    // not name, with their subtrees.
    let mut lower_only: Vec<(Vec<u8>, usize)> = Vec::new();
    for (vdir, shows) in &merged {
        let Some(ld) = shows else { continue };
        let names = named.get(vdir);
        for &i in lower.children.get(ld.as_slice()).into_iter().flatten() {
            let name = split_path(&base.entries[i].path).map_or(&b""[..], |(_, n)| n);
            if !names.is_some_and(|s| s.contains(name)) {
                lower_only.push((join(vdir, name), i));
            }
        }
    }
    while let Some((vp, i)) = lower_only.pop() {
        let e = &base.entries[i];
        let ve = match groups.get(&e.link_group).filter(|_| e.link_group != 0) {
            Some(up) => {
                let mut v = up.clone();
                v.entry.path = vp.clone();
                v
            }
            None => {
                let mut entry = e.clone();
                entry.path = vp.clone();
                ViewEntry {
                    entry,
                    private: None,
                    inode: lower.id(e),
                }
            }
        };
        if e.kind == Kind::Dir {
            for &c in lower.children.get(e.path.as_slice()).into_iter().flatten() {
                let name = split_path(&base.entries[c].path).map_or(&b""[..], |(_, n)| n);
                lower_only.push((join(&vp, name), c));
            }
        }
        view.entries.push(ve);
    }
    view.finish();
    Ok(view)
}

/// The stat fields a view entry needs.
struct St {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, u32),
    rdev: u64,
    ino: u64,
}

fn stat_from(s: &rustix::fs::Stat) -> St {
    St {
        mode: s.st_mode,
        uid: s.st_uid,
        gid: s.st_gid,
        size: s.st_size as u64,
        mtime: (s.st_mtime, s.st_mtime_nsec as u32),
        rdev: s.st_rdev,
        ino: s.st_ino,
    }
}

fn stat_of(m: &std::fs::Metadata) -> St {
    St {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec() as u32),
        rdev: m.rdev(),
        ino: m.ino(),
    }
}

fn kind_of(mode: u32) -> Kind {
    Kind::of_mode(mode & libc::S_IFMT).unwrap_or(Kind::Socket)
}

/// The entry of an upper file as it is (private content for files).
fn entry_of(
    path: Vec<u8>,
    kind: Kind,
    st: &St,
    raw: Vec<(Vec<u8>, Vec<u8>)>,
    target: Vec<u8>,
    file: Option<PathBuf>,
) -> ViewEntry {
    ViewEntry {
        entry: Entry {
            path,
            kind,
            mode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
            mtime_sec: st.mtime.0,
            mtime_nsec: st.mtime.1,
            size: match kind {
                Kind::File => st.size,
                Kind::Symlink => target.len() as u64,
                _ => 0,
            },
            hash: None,
            rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) {
                st.rdev
            } else {
                0
            },
            target,
            xattrs: visible_xattrs(raw),
            link_group: 0,
        },
        private: file,
        inode: st.ino,
    }
}
