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

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::container::upper::upper_dir;
use crate::container::view::{View, ViewEntry};
use crate::store::Result;
use crate::store::error::IoContext;
use crate::store::fsutil;
use crate::store::manifest::{Entry, Kind, Manifest};

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
            if let Some((parent, _)) = crate::store::manifest::split_path(&e.path) {
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

/// The view of a kernel container whose base is `base`.
pub fn view(base: &Manifest, private: &Path) -> Result<View> {
    let lower = Lower::new(base);
    let upper = upper_dir(private);
    let mut view = View::default();
    // Copied-up template hardlink groups: group -> the upper inode's entry.
    let mut groups: HashMap<u32, ViewEntry> = HashMap::new();
    let mut lower_only: Vec<(Vec<u8>, usize)> = Vec::new();
    // (path in the view, upper dir, lower dir it merges)
    let mut stack: Vec<(Vec<u8>, PathBuf, Option<Vec<u8>>)> =
        vec![(Vec::new(), upper.clone(), Some(Vec::new()))];
    let root_meta = std::fs::symlink_metadata(&upper).at(&upper)?;
    view.entries
        .push(upper_entry(&upper, Vec::new(), &root_meta, Kind::Dir)?);
    while let Some((vpath, udir, ldir)) = stack.pop() {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in std::fs::read_dir(&udir).at(&udir)? {
            let e = e.at(&udir)?;
            names.push(e.file_name().as_bytes().to_vec());
        }
        // Template entries of the merged directory not named in the upper.
        if let Some(ld) = &ldir {
            for &i in lower.children.get(ld.as_slice()).into_iter().flatten() {
                let e = &base.entries[i];
                let name = crate::store::manifest::split_path(&e.path).map_or(&b""[..], |(_, n)| n);
                if !names.iter().any(|n| n.as_slice() == name) {
                    lower_only.push((join(&vpath, name), i));
                }
            }
        }
        for name in names {
            let up = udir.join(OsStr::from_bytes(&name));
            let meta = std::fs::symlink_metadata(&up).at(&up)?;
            let vp = join(&vpath, &name);
            let lp = ldir.as_ref().map(|d| join(d, &name));
            let kind = Kind::of_file_type(&meta.file_type());
            if kind == Kind::CharDev && meta.rdev() == 0 {
                continue; // a whiteout
            }
            let raw = fsutil::read_xattrs(&up).at(&up)?;
            if kind == Kind::Dir {
                let merged = if xattr(&raw, "trusted.overlay.opaque").as_deref() == Some(b"y") {
                    None
                } else if let Some(r) = xattr(&raw, "trusted.overlay.redirect") {
                    redirect_target(&r, ldir.as_deref())
                } else {
                    lp.clone()
                }
                .filter(|p| lower.get(p).is_some_and(|e| e.kind == Kind::Dir));
                view.entries
                    .push(upper_entry(&up, vp.clone(), &meta, kind)?);
                stack.push((vp, up, merged));
                continue;
            }
            let mut ve = upper_entry(&up, vp, &meta, kind)?;
            if kind == Kind::File {
                if xattr(&raw, "trusted.overlay.metacopy").is_some() {
                    let src = match xattr(&raw, "trusted.overlay.redirect") {
                        Some(r) => redirect_target(&r, ldir.as_deref()),
                        None => lp.clone(),
                    };
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
                if xattr(&raw, "trusted.overlay.nlink").is_some() {
                    let src = match xattr(&raw, "trusted.overlay.redirect") {
                        Some(r) => redirect_target(&r, ldir.as_deref()),
                        None => lp.clone(),
                    };
                    if let Some(le) = src.as_deref().and_then(|p| lower.get(p))
                        && le.link_group != 0
                    {
                        groups.insert(le.link_group, ve.clone());
                    }
                }
            }
            view.entries.push(ve);
        }
    }
    // Template subtrees shown as they are (below directories the upper lacks).
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
                let name = crate::store::manifest::split_path(&base.entries[c].path)
                    .map_or(&b""[..], |(_, n)| n);
                lower_only.push((join(&vp, name), c));
            }
        }
        view.entries.push(ve);
    }
    view.finish();
    Ok(view)
}

/// The entry of an upper file as it is (private content for files).
fn upper_entry(
    path: &Path,
    vpath: Vec<u8>,
    meta: &std::fs::Metadata,
    kind: Kind,
) -> Result<ViewEntry> {
    let raw = fsutil::read_xattrs(path).at(path)?;
    let target = if kind == Kind::Symlink {
        std::fs::read_link(path)
            .at(path)?
            .as_os_str()
            .as_bytes()
            .to_vec()
    } else {
        Vec::new()
    };
    let entry = Entry {
        path: vpath,
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_sec: meta.mtime(),
        mtime_nsec: meta.mtime_nsec() as u32,
        size: match kind {
            Kind::File => meta.len(),
            Kind::Symlink => target.len() as u64,
            _ => 0,
        },
        hash: None,
        rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            meta.rdev()
        } else {
            0
        },
        target,
        xattrs: visible_xattrs(raw),
        link_group: 0,
    };
    Ok(ViewEntry {
        entry,
        private: (kind == Kind::File).then(|| path.to_path_buf()),
        inode: meta.ino(),
    })
}
