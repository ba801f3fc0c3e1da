//! The three-way merge of a rebase: per path, between the old base `O`, the new
//! base `N` and the container's view `C`.
//!
//! - `C` equals `O` at a path (the container never changed it): the path shows
//!   `N` (its content, its metadata, or its absence): *updated* when `N`
//!   differs from `O`.
//! - `C` differs from `O` (content, metadata, created, deleted, renamed away or
//!   to): where `C` equals `N`, the path is `N`'s again (*re-shared*);
//!   otherwise `C` stays: *kept* when `N` equals `O` there, a *conflict* when
//!   both changed it differently.
//!
//! Directories compare by mode, owner and xattrs (their mtime follows from
//! their entries, which merge one by one). Files compare by kind, mode, owner,
//! mtime, xattrs and content (a private file equals `N`'s when its bytes hash
//! to `N`'s object). Hardlink groups of the container stay whole: if one name
//! keeps the container's inode, every name does. A path whose parent would not
//! be a directory of the result is fixed up: the container's own files keep
//! their directories (a conflict where `N` removed or replaced one), and a new
//! template path under a directory the container removed stays absent (also a
//! conflict).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::container::view::Pick;
use crate::container::view::{View, ViewEntry, same_as, same_meta};
use crate::store::Result;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest, split_path};

/// What happened to each path, for the report (paths as text).
#[derive(Clone, Debug, Default, Serialize)]
pub struct MergeReport {
    /// Paths the container never changed that now show the new base.
    pub updated: Vec<String>,
    /// The container's changes, kept (the new base did not touch these paths).
    pub kept: Vec<String>,
    /// Paths the container changed exactly as the new base did: shared again.
    pub reshared: Vec<String>,
    /// Paths both changed differently; the container's version stays.
    pub conflicts: Vec<Conflict>,
}

/// A path where the container's change and the new base's disagree.
#[derive(Clone, Debug, Serialize)]
pub struct Conflict {
    pub path: String,
    pub reason: &'static str,
}

/// The merged tree: every path of the result, sorted, with its origin.
#[derive(Debug, Default)]
pub struct Merged {
    pub picks: Vec<(Vec<u8>, Pick)>,
    pub report: MergeReport,
    /// Container files (view index) whose bytes are the new base's object:
    /// kept with the container's metadata, the bytes shared again.
    pub reshare: Vec<(usize, Hash)>,
}

impl Merged {
    /// `view` with the files of [`Merged::reshare`] (every name of their
    /// inode) referring to their object instead of a private file.
    pub fn view_after(&self, view: &View) -> View {
        let by_inode: HashMap<u64, Hash> = self
            .reshare
            .iter()
            .map(|&(i, h)| (view.entries[i].inode, h))
            .collect();
        view.with_shared(&by_inode)
    }
}

fn text(p: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(p))
}

/// Merge `c` (a container's view on `old`) onto `new`. `hash` gives a private
/// file's content hash (called only for private files of `N`'s size at a path
/// where `N` has a file).
pub fn merge(
    old: &Manifest,
    new: &Manifest,
    c: &View,
    hash: &dyn Fn(&Path) -> Result<Hash>,
) -> Result<Merged> {
    let oi: HashMap<&[u8], usize> = index(old);
    let ni: HashMap<&[u8], usize> = index(new);
    let ci = c.index();
    let mut paths: Vec<&[u8]> = oi
        .keys()
        .chain(ni.keys())
        .chain(ci.keys())
        .copied()
        .collect();
    paths.sort_unstable();
    paths.dedup();

    #[derive(Clone, Copy, PartialEq)]
    enum Class {
        Untouched,
        Updated,
        Kept,
        Reshared,
        Conflict(&'static str),
    }
    let memo: RefCell<HashMap<PathBuf, Hash>> = RefCell::new(HashMap::new());
    let hashed = |p: &Path| -> Result<Hash> {
        if let Some(h) = memo.borrow().get(p) {
            return Ok(*h);
        }
        let h = hash(p)?;
        memo.borrow_mut().insert(p.to_path_buf(), h);
        Ok(h)
    };
    let hash: &dyn Fn(&Path) -> Result<Hash> = &hashed;
    let mut reshare: Vec<(usize, Hash)> = Vec::new();
    let mut result: BTreeMap<Vec<u8>, (Option<Pick>, Class)> = BTreeMap::new();
    for p in paths {
        let o = oi.get(p).map(|&i| &old.entries[i]);
        let n = ni.get(p).map(|&i| &new.entries[i]);
        let cv = ci.get(p).map(|&i| &c.entries[i]);
        let changed = match (cv, o) {
            (None, None) => false,
            (Some(cv), Some(o)) => !same_as(cv, o),
            _ => true,
        };
        let base_pick = ni.get(p).map(|&i| Pick::Base(i));
        let own_pick = ci.get(p).map(|&i| Pick::Own(i));
        let base_changed = match (n, o) {
            (None, None) => false,
            (Some(n), Some(o)) => !(same_meta(n, o) && n.hash == o.hash && n.size == o.size),
            _ => true,
        };
        let decision = if !changed {
            (
                base_pick,
                if base_changed {
                    Class::Updated
                } else {
                    Class::Untouched
                },
            )
        } else {
            let equal_new = match (cv, n) {
                (None, None) => true,
                (Some(cv), Some(n)) => equal_to(cv, n, hash)?,
                _ => false,
            };
            let bytes = match (cv, n) {
                (Some(cv), Some(n)) if !equal_new => same_bytes(cv, n, hash)?,
                _ => None,
            };
            if equal_new {
                (base_pick, Class::Reshared)
            } else if let (Some(h), Some(&ci_p)) = (bytes, ci.get(p)) {
                // The new base's bytes under the container's own metadata:
                // the bytes are shared again, the metadata stays.
                reshare.push((ci_p, h));
                (own_pick, Class::Reshared)
            } else if base_changed {
                (
                    own_pick,
                    Class::Conflict("changed in the container and in the new base"),
                )
            } else {
                (own_pick, Class::Kept)
            }
        };
        result.insert(p.to_vec(), decision);
    }

    // A directory whose entries the container changed keeps its mtime where
    // its other attributes are the new base's (its entries merge anyway).
    for (p, slot) in result.iter_mut() {
        let (Some(Pick::Base(ni_p)), Some(&ci_p)) = (slot.0, ci.get(p.as_slice())) else {
            continue;
        };
        let (c_e, n_e) = (&c.entries[ci_p].entry, &new.entries[ni_p]);
        // Touched: made by the container, or its entries changed.
        let touched = oi
            .get(p.as_slice())
            .map(|&i| &old.entries[i])
            .is_none_or(|o_e| (c_e.mtime_sec, c_e.mtime_nsec) != (o_e.mtime_sec, o_e.mtime_nsec));
        if c_e.kind == Kind::Dir && same_meta(c_e, n_e) && touched {
            slot.0 = Some(Pick::Own(ci_p));
        }
    }

    // Hardlink groups of the container stay whole.
    let mut names: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, e) in c.entries.iter().enumerate() {
        if e.entry.link_group != 0 {
            names.entry(e.inode).or_default().push(i);
        }
    }
    for members in names.values() {
        let own = members.iter().any(|&i| {
            matches!(
                result.get(&c.entries[i].entry.path),
                Some((Some(Pick::Own(_)), _))
            )
        });
        if own {
            for &i in members {
                let p = &c.entries[i].entry.path;
                if let Some(slot) = result.get_mut(p)
                    && slot.0 != Some(Pick::Own(i))
                {
                    let base_changed = ni.get(p.as_slice()).map(|&j| &new.entries[j])
                        != oi.get(p.as_slice()).map(|&j| &old.entries[j]);
                    *slot = (
                        Some(Pick::Own(i)),
                        if base_changed {
                            Class::Conflict("a hardlink of a file the container changed")
                        } else {
                            Class::Kept
                        },
                    );
                }
            }
        }
    }

    // Parents: the container's own entries keep their directories; a base
    // entry whose directory is gone or not a directory stays out.
    let is_dir = |pick: Option<Pick>| match pick {
        Some(Pick::Base(i)) => new.entries[i].kind == Kind::Dir,
        Some(Pick::Own(i)) => c.entries[i].entry.kind == Kind::Dir,
        None => false,
    };
    let own_paths: Vec<Vec<u8>> = result
        .iter()
        .filter(|(_, (pick, _))| matches!(pick, Some(Pick::Own(_))))
        .map(|(p, _)| p.clone())
        .collect();
    for p in own_paths {
        let mut anc = parent(&p);
        while let Some(a) = anc {
            let slot = result.get(a).map(|s| s.0).unwrap_or(None);
            if is_dir(slot) {
                break;
            }
            let Some(&ci_a) = ci.get(a) else { break };
            result.insert(
                a.to_vec(),
                (
                    Some(Pick::Own(ci_a)),
                    Class::Conflict(
                        "the new base removed or replaced a directory the container has files in",
                    ),
                ),
            );
            anc = parent(a);
        }
    }
    let mut merged = Merged {
        reshare,
        ..Merged::default()
    };
    let mut present: HashMap<Vec<u8>, bool> = HashMap::new(); // path -> is a directory
    for (p, (pick, class)) in result {
        let mut class = class;
        let mut pick = pick;
        if pick.is_some()
            && let Some(par) = parent(&p)
            && !present.get(par).copied().unwrap_or(false)
        {
            pick = None;
            class = Class::Conflict("new in the base, but the container removed its directory");
        }
        match class {
            Class::Untouched => {}
            Class::Updated => merged.report.updated.push(text(&p)),
            Class::Kept => merged.report.kept.push(text(&p)),
            Class::Reshared => merged.report.reshared.push(text(&p)),
            Class::Conflict(reason) => merged.report.conflicts.push(Conflict {
                path: text(&p),
                reason,
            }),
        }
        if let Some(pick) = pick {
            present.insert(p.clone(), is_dir(Some(pick)));
            merged.picks.push((p, pick));
        }
    }
    Ok(merged)
}

/// The container's entry equals `n`, reading a private file only when its size
/// is `n`'s.
fn equal_to(c: &ViewEntry, n: &Entry, hash: &dyn Fn(&Path) -> Result<Hash>) -> Result<bool> {
    match &c.private {
        None => Ok(same_as(c, n)),
        Some(p) => Ok(n.kind == Kind::File
            && same_meta(&c.entry, n)
            && c.entry.size == n.size
            && Some(hash(p)?) == n.hash),
    }
}

/// The hash of the container file's bytes when they are `n`'s.
fn same_bytes(
    c: &ViewEntry,
    n: &Entry,
    hash: &dyn Fn(&Path) -> Result<Hash>,
) -> Result<Option<Hash>> {
    if c.entry.kind != Kind::File || n.kind != Kind::File || c.entry.size != n.size {
        return Ok(None);
    }
    let h = match &c.private {
        Some(p) => Some(hash(p)?),
        None => c.entry.hash,
    };
    Ok(h.filter(|h| Some(*h) == n.hash))
}

fn index(m: &Manifest) -> HashMap<&[u8], usize> {
    m.entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_slice(), i))
        .collect()
}

/// The parent path (`""` is the root); `None` for the root itself.
fn parent(p: &[u8]) -> Option<&[u8]> {
    split_path(p).map(|(parent, _)| parent)
}
