//! A kernel container's upper directory written afresh for a (new) template
//! image: the merged tree of a rebase or dedup expressed the way overlayfs
//! reads it, under the rules measured on 6.18 (ARCHITECTURE.md, "Rebasing a
//! kernel container"):
//!
//! - the new upper root carries no `trusted.overlay.origin` (the old image's
//!   would fail the mount with ESTALE); the work directory is new and empty;
//! - a template path the tree lacks is a 0:0 character device (whiteout);
//!   directories are never redirected: a directory of the tree that the new
//!   template also has merges with it, with whiteouts for what it lacks;
//! - a file whose bytes are an object of the new template is a metadata-only
//!   upper file (`trusted.overlay.metacopy`, sparse, the object's size) at a
//!   template path holding those bytes: its own path, or (absolute
//!   `trusted.overlay.redirect`) a path the tree lacks, used by no other
//!   inode: overlayfs allows one upper inode per template inode. Template
//!   hardlink groups are never used so; such bytes are copied;
//! - the container's own files are hardlinked from the old upper directory
//!   (never copied), which is thrown away once the new one is installed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid};

use crate::container::upper::{upper_dir, work_dir};
use crate::container::view::{Pick, View};
use crate::store::Store;
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest, split_path};
use crate::store::objects;

/// Write `next/upper` and `next/work` for the tree `picks` (entries of `new`
/// and of `view`, sorted by path) over the image of `new`.
pub(crate) fn write_upper(
    store: &Store,
    new: &Manifest,
    view: &View,
    picks: &[(Vec<u8>, Pick)],
    next: &Path,
) -> Result<()> {
    let upper = upper_dir(next);
    let work = work_dir(next);
    fsutil::create_private_dir(&upper).at(&upper)?;
    fsutil::create_private_dir(&work).at(&work)?;
    let n_index: HashMap<&[u8], usize> = new
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_slice(), i))
        .collect();
    let result: HashMap<&[u8], Pick> = picks.iter().map(|(p, k)| (p.as_slice(), *k)).collect();
    let entry_of = |pick: Pick| -> &Entry {
        match pick {
            Pick::Base(i) => &new.entries[i],
            Pick::Own(i) => &view.entries[i].entry,
        }
    };
    let mut w = Writer {
        upper: upper.clone(),
        made_dirs: BTreeMap::new(),
    };

    // Names of each of the container's own inodes in the tree.
    let mut names: HashMap<u64, Vec<usize>> = HashMap::new();
    for (_, pick) in picks {
        if let Pick::Own(i) = *pick
            && view.entries[i].entry.kind != Kind::Dir
        {
            names.entry(view.entries[i].inode).or_default().push(i);
        }
    }
    // Template files by content, for metadata-only upper files.
    let mut by_hash: HashMap<Hash, Vec<usize>> = HashMap::new();
    for (i, e) in new.entries.iter().enumerate() {
        if let (Kind::File, Some(h), 0) = (e.kind, e.hash, e.link_group) {
            by_hash.entry(h).or_default().push(i);
        }
    }
    let mut used: HashSet<usize> = HashSet::new();
    let mut made: HashMap<u64, PathBuf> = HashMap::new();

    for (path, pick) in picks {
        let Pick::Own(i) = *pick else { continue };
        let v = &view.entries[i];
        let e = &v.entry;
        let parent = split_path(path).map(|(p, _)| p);
        if let Some(parent) = parent {
            w.ensure_dir(parent, &result, &entry_of)?;
        }
        let dest = w.path(path);
        if e.kind == Kind::Dir {
            if path.is_empty() {
                w.made_dirs.insert(Vec::new(), e.clone());
                continue;
            }
            let same = n_index
                .get(path.as_slice())
                .map(|&j| &new.entries[j])
                .is_some_and(|b| {
                    b.kind == Kind::Dir
                        && b.mode == e.mode
                        && b.uid == e.uid
                        && b.gid == e.gid
                        && b.xattrs == e.xattrs
                });
            if !same {
                w.ensure_dir(path, &result, &entry_of)?;
            }
            continue;
        }
        if let Some(first) = made.get(&v.inode) {
            fs::hard_link(first, &dest).at(&dest)?;
            continue;
        }
        match (e.kind, &v.private, e.hash) {
            // A copied-up member of a template hardlink group carries
            // overlayfs's `nlink`/`origin` for the old image: a link would
            // take them along (and tie the new upper to the old one), so its
            // bytes are copied into a fresh file.
            (Kind::File, Some(src), _) if has_nlink(src) => {
                let from = fs::File::open(src).at(src)?;
                let len = from.metadata().at(src)?.len();
                let segs = fsutil::data_segments(&from, len).at(src)?;
                let out = fs::File::create(&dest).at(&dest)?;
                fsutil::copy_segments(&from, &out, &segs, len).at(&dest)?;
                drop(out);
                set_attrs(&dest, e, &[])?;
            }
            (Kind::File, Some(src), _) => match fs::hard_link(src, &dest) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    fs::File::create(&dest).at(&dest)?;
                    set_attrs(&dest, e, &[])?;
                }
                Err(err) => return Err(err).at(&dest),
            },
            (Kind::File, None, Some(h)) => {
                let mine: Vec<&[u8]> = names[&v.inode]
                    .iter()
                    .map(|&k| view.entries[k].entry.path.as_slice())
                    .collect();
                let own_path = mine.iter().find_map(|p| {
                    n_index.get(p).copied().filter(|&j| {
                        let b = &new.entries[j];
                        b.kind == Kind::File
                            && b.hash == Some(h)
                            && b.link_group == 0
                            && !used.contains(&j)
                    })
                });
                let source = own_path.or_else(|| {
                    by_hash.get(&h).into_iter().flatten().copied().find(|&j| {
                        !used.contains(&j) && !result.contains_key(new.entries[j].path.as_slice())
                    })
                });
                match source {
                    Some(j) => {
                        used.insert(j);
                        let q = &new.entries[j].path;
                        let redirect = (mine.len() > 1 || mine[0] != q.as_slice())
                            .then(|| [b"/", q.as_slice()].concat());
                        let f = fs::File::create(&dest).at(&dest)?;
                        f.set_len(e.size).at(&dest)?;
                        drop(f);
                        let mut ovl = vec![(b"trusted.overlay.metacopy".to_vec(), Vec::new())];
                        if let Some(r) = redirect {
                            ovl.push((b"trusted.overlay.redirect".to_vec(), r));
                        }
                        set_attrs(&dest, e, &ovl)?;
                    }
                    None => {
                        // Bytes the new template does not have: the container's own.
                        let src = objects::open(store, &h)?;
                        let out = fs::File::create(&dest).at(&dest)?;
                        let segs = fsutil::data_segments(&src, e.size).at(store.object_path(&h))?;
                        fsutil::copy_segments(&src, &out, &segs, e.size).at(&dest)?;
                        drop(out);
                        set_attrs(&dest, e, &[])?;
                    }
                }
            }
            (Kind::File, None, None) => {
                fs::File::create(&dest).at(&dest)?;
                set_attrs(&dest, e, &[])?;
            }
            (Kind::Symlink, _, _) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), &dest).at(&dest)?;
                set_attrs(&dest, e, &[])?;
            }
            (kind, _, _) => {
                mknod(&dest, kind, e.mode, e.rdev)?;
                set_attrs(&dest, e, &[])?;
            }
        }
        made.insert(v.inode, dest);
    }
    // Whiteouts: template paths the tree lacks, under directories it has.
    for b in &new.entries {
        let Some((parent, _)) = split_path(&b.path) else {
            continue;
        };
        if result.contains_key(b.path.as_slice()) {
            continue;
        }
        let parent_is_dir = result
            .get(parent)
            .is_some_and(|&k| entry_of(k).kind == Kind::Dir);
        if !parent_is_dir {
            continue;
        }
        w.ensure_dir(parent, &result, &entry_of)?;
        mknod(&w.path(&b.path), Kind::CharDev, 0, 0)?;
    }
    // Directory attributes last (creating entries moved their mtimes),
    // deepest first; the root is the upper directory itself.
    if !w.made_dirs.contains_key(&Vec::new())
        && let Some(&root) = result.get(&b""[..])
    {
        w.made_dirs.insert(Vec::new(), entry_of(root).clone());
    }
    for (p, e) in w.made_dirs.iter().rev() {
        set_attrs(&w.path(p), e, &[])?;
    }
    Ok(())
}

struct Writer {
    upper: PathBuf,
    /// Directories made in the upper (and the root), with their attributes.
    made_dirs: BTreeMap<Vec<u8>, Entry>,
}

impl Writer {
    fn path(&self, p: &[u8]) -> PathBuf {
        if p.is_empty() {
            self.upper.clone()
        } else {
            self.upper.join(OsStr::from_bytes(p))
        }
    }

    /// Make the upper directory for `p` and its parents (attributes are set
    /// at the end).
    fn ensure_dir<'a>(
        &mut self,
        p: &[u8],
        result: &HashMap<&[u8], Pick>,
        entry_of: &dyn Fn(Pick) -> &'a Entry,
    ) -> Result<()> {
        if p.is_empty() || self.made_dirs.contains_key(p) {
            return Ok(());
        }
        if let Some((parent, _)) = split_path(p) {
            self.ensure_dir(parent, result, entry_of)?;
        }
        let Some(&pick) = result.get(p) else {
            return Ok(());
        };
        let dest = self.path(p);
        fsutil::create_private_dir(&dest).at(&dest)?;
        self.made_dirs.insert(p.to_vec(), entry_of(pick).clone());
        Ok(())
    }
}

/// The upper file carries overlayfs's hardlink-group count.
fn has_nlink(p: &Path) -> bool {
    let mut buf = [0u8; 64];
    rustix::fs::lgetxattr(p, "trusted.overlay.nlink", &mut buf).is_ok()
}

fn mknod(path: &Path, kind: Kind, mode: u32, rdev: u64) -> Result<()> {
    let ft = match kind {
        Kind::CharDev => FileType::CharacterDevice,
        Kind::BlockDev => FileType::BlockDevice,
        Kind::Fifo => FileType::Fifo,
        Kind::Socket => FileType::Socket,
        _ => FileType::RegularFile,
    };
    rustix::fs::mknodat(CWD, path, ft, Mode::from_raw_mode(mode & 0o7777), rdev).at(path)
}

/// Owner, mode, xattrs (the template's `trusted.overlay.*` escaped, plus the
/// overlayfs ones given) and mtime of an upper entry, not following symlinks.
pub(crate) fn set_attrs(path: &Path, e: &Entry, ovl: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(e.uid)),
        Some(Gid::from_raw(e.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .at(path)?;
    if e.kind != Kind::Symlink {
        rustix::fs::chmod(path, Mode::from_raw_mode(e.mode & 0o7777)).at(path)?;
    }
    let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = e
        .xattrs
        .iter()
        .map(|(n, v)| match n.strip_prefix(b"trusted.overlay.") {
            Some(rest) => ([b"trusted.overlay.overlay.", rest].concat(), v.clone()),
            None => (n.clone(), v.clone()),
        })
        .collect();
    xattrs.extend(ovl.iter().cloned());
    fsutil::write_xattrs(path, &xattrs).at(path)?;
    let t = Timespec {
        tv_sec: e.mtime_sec,
        tv_nsec: i64::from(e.mtime_nsec),
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .at(path)
}
