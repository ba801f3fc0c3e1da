//! `dedup`: private files of containers whose bytes equal a stored object, or
//! another container's private file, become shared again.
//!
//! Every private file of the chosen containers is hashed (in parallel); a hash
//! the store holds, or that two FUSE containers' files (or two inodes) have,
//! is an object: pinned in a write session, staged once from one of the files
//! when new, published. The containers' references to these objects are
//! committed (one batch) while the session still pins them, so a concurrent
//! gc keeps them; only then do the containers change:
//!
//! - an unmounted container's area is rewritten (`container::pending`, as for
//!   a rebase onto the same base: a file equal to its base path's becomes the
//!   base's inode again, any other refers to the object and is copied up again
//!   on its next write);
//! - a mounted FUSE container's daemon is asked to do it
//!   (`container::share`): it skips files open or written since they were
//!   hashed;
//! - a kernel container can only share bytes its image has at the same path
//!   (overlayfs allows one upper inode per template inode): its upper file
//!   becomes metadata-only, or goes. Everything else stays private, and a
//!   mounted kernel container is skipped (overlayfs forbids changing an upper
//!   directory under a mount).
//!
//! A crash at any point leaves each container before or after, and at worst
//! references to objects it no longer uses (kept until its next rebase or
//! dedup).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::container::share::{self, ShareRequest, Stamp};
use crate::container::view::{self, View};
use crate::container::{self, upper_view};
use crate::lifecycle::merge;
use crate::lifecycle::rebase::{Staged, Switch, install, private_of, stage};
use crate::lifecycle::{IsMounted, Run, hold_all};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::integrity::ObjectChecker;
use crate::store::manifest::Manifest;
use crate::store::session::Session;

/// What dedup did to one container.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DedupContainer {
    pub container: String,
    pub mounted: bool,
    /// Private files (inodes) and bytes before, those shared again, after.
    pub private_files_before: u64,
    pub private_bytes_before: u64,
    pub shared_again_files: u64,
    pub shared_again_bytes: u64,
    pub private_files_after: u64,
    pub private_bytes_after: u64,
    /// Why nothing was done, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// What a dedup run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DedupSummary {
    pub containers: Vec<DedupContainer>,
    /// Objects this run added (contents several containers had privately).
    pub new_objects: u64,
    pub new_object_bytes: u64,
    /// Private bytes freed: shared again, less the new objects.
    pub freed_bytes: u64,
    pub seconds: f64,
}

/// A container dedup works on: held (unmounted, locked) or mounted (FUSE,
/// read without changing anything; its daemon applies the result).
struct Subject {
    rec: ContainerRecord,
    base: Manifest,
    view: View,
    held: Option<crate::lifecycle::Held>,
}

/// One private inode.
struct PrivateFile {
    ct: usize,
    entry: usize,
    path: PathBuf,
    hash: Hash,
    size: u64,
    stamp: Stamp,
}

/// Which private inodes of each subject can refer to an object, and the
/// contents several FUSE containers hold (objects to make).
struct Plan {
    files: Vec<PrivateFile>,
    /// Per subject: inode -> object.
    per_ct: Vec<HashMap<u64, Hash>>,
    /// New objects: hash -> (file to take the bytes from, size).
    to_store: HashMap<Hash, usize>,
}

/// Hash every private inode of `subjects` and decide; `stored` says whether
/// the store holds an object whole.
fn plan(subjects: &[Subject], stored: &mut dyn FnMut(&Hash, u64) -> Result<bool>) -> Result<Plan> {
    let mut todo = Vec::new();
    for (ci, s) in subjects.iter().enumerate() {
        let mut seen = HashSet::new();
        for (i, p) in s.view.private_files() {
            if seen.insert(s.view.entries[i].inode) {
                todo.push((ci, i, p.to_path_buf()));
            }
        }
    }
    // Hashed with the stamp before and after: a file written meanwhile (a
    // mounted container) is left alone.
    let files: Vec<PrivateFile> = todo
        .into_par_iter()
        .filter_map(|(ct, entry, path)| {
            let before = std::fs::symlink_metadata(&path)
                .ok()
                .map(|m| Stamp::of(&m))?;
            let (hash, size) = view::hash_private(&path).ok()?;
            let after = std::fs::symlink_metadata(&path)
                .ok()
                .map(|m| Stamp::of(&m))?;
            (before == after).then_some(PrivateFile {
                ct,
                entry,
                path,
                hash,
                size,
                stamp: after,
            })
        })
        .collect();
    let fuse = |f: &PrivateFile| subjects[f.ct].rec.backend == Backend::Fuse;
    let mut holders: HashMap<Hash, usize> = HashMap::new();
    for f in files.iter().filter(|f| fuse(f)) {
        *holders.entry(f.hash).or_default() += 1;
    }
    let mut object: HashMap<Hash, bool> = HashMap::new();
    let mut to_store = HashMap::new();
    for (k, f) in files.iter().enumerate().filter(|(_, f)| fuse(f)) {
        if object.contains_key(&f.hash) {
            continue;
        }
        let ok = if stored(&f.hash, f.size)? {
            true
        } else if holders[&f.hash] >= 2 {
            to_store.insert(f.hash, k);
            true
        } else {
            false
        };
        object.insert(f.hash, ok);
    }
    let mut per_ct: Vec<HashMap<u64, Hash>> = vec![HashMap::new(); subjects.len()];
    for f in &files {
        let s = &subjects[f.ct];
        let ok = if fuse(f) {
            object.get(&f.hash).copied().unwrap_or(false)
        } else {
            same_path(s, f)
        };
        if ok {
            per_ct[f.ct].insert(s.view.entries[f.entry].inode, f.hash);
        }
    }
    Ok(Plan {
        files,
        per_ct,
        to_store,
    })
}

/// The base has these very bytes at the file's path (not in a hardlink group).
fn same_path(s: &Subject, f: &PrivateFile) -> bool {
    let path = &s.view.entries[f.entry].entry.path;
    s.base
        .entries
        .binary_search_by(|e| e.path.as_slice().cmp(path))
        .ok()
        .map(|i| &s.base.entries[i])
        .is_some_and(|b| b.hash == Some(f.hash) && b.link_group == 0)
}

/// Dedup `names` (every container when empty).
pub fn dedup(
    store: &Store,
    names: &[String],
    run: Run,
    mounted: IsMounted<'_>,
) -> Result<DedupSummary> {
    let dry_run = run == Run::DryRun;
    let started = Instant::now();
    let names = if names.is_empty() {
        all_names(store)?
    } else {
        names.to_vec()
    };
    let mut sum = DedupSummary::default();
    let mut subjects = Vec::new();
    for (ct, taken) in hold_all(store, &names, "dedup", mounted)? {
        match taken {
            Ok(h) => subjects.push(Subject {
                rec: h.rec.clone(),
                base: h.base.clone(),
                view: h.view.clone(),
                held: Some(h),
            }),
            Err(Error::MountedRefused { .. }) => match read_mounted(store, &ct, mounted)? {
                Some(s) => subjects.push(s),
                None => sum.containers.push(DedupContainer {
                    container: ct.clone(),
                    mounted: true,
                    skipped: Some(
                        "a mounted kernel container (overlayfs forbids changing its upper directory under the mount), or one another command holds; unmount it or retry"
                            .into(),
                    ),
                    ..DedupContainer::default()
                }),
            },
            Err(e) => return Err(e),
        }
    }
    let took = || started.elapsed().as_secs_f64();
    log::info!("dedup: {} containers read: {:.3} s", subjects.len(), took());
    let session = Session::begin(store)?;
    // A stored object counts only when its bytes hash to its name: private
    // bytes are never dropped for a damaged copy (a new copy replaces it).
    let checker = ObjectChecker::new(store);
    let p = plan(&subjects, &mut |h, size| {
        Ok(session.pin_and_check(h, size)? && checker.open_checked(h, size).is_ok())
    })?;
    log::info!(
        "dedup: {} private files hashed and planned: {:.3} s",
        p.files.len(),
        took()
    );
    if !dry_run {
        // Staged whether or not a file of that name exists: one that does is
        // damaged (its bytes did not hash to its name), and publishing
        // replaces it.
        for (&h, &k) in &p.to_store {
            let f = &p.files[k];
            let file = File::open(&f.path).at(&f.path)?;
            let segs = fsutil::data_segments(&file, f.size).at(&f.path)?;
            let (staged, out) = session.stage_file()?;
            fsutil::copy_segments(&file, &out, &segs, f.size).at(&staged)?;
            if Hash::from(fsutil::hash_mapped(&out).at(&staged)?) != h {
                return Err(Error::Changed {
                    path: f.path.clone(),
                    what: "content changed while dedup copied it",
                });
            }
            session.staged(staged, h);
        }
        session.publish()?;
        log::info!(
            "dedup: {} objects published: {:.3} s",
            p.to_store.len(),
            took()
        );
        fsutil::failpoint_io("dedup-published").at(store.root())?;
        // References first, while the session still pins the objects.
        let db = Catalog::open(store)?;
        for (s, by_inode) in subjects.iter().zip(&p.per_ct) {
            let more: Vec<Hash> = by_inode.values().copied().collect();
            if !more.is_empty() && s.rec.backend == Backend::Fuse {
                db.add_container_refs(&s.rec.name, &more)?;
            }
        }
    }
    sum.new_objects = p.to_store.len() as u64;
    sum.new_object_bytes = p.to_store.values().map(|&k| p.files[k].size).sum();
    let hashes: HashMap<PathBuf, Hash> = p.files.iter().map(|f| (f.path.clone(), f.hash)).collect();
    for (ci, s) in subjects.iter().enumerate() {
        let by_inode = &p.per_ct[ci];
        let (files_before, bytes_before) = private_of(&s.view, 0..s.view.entries.len());
        let mut row = DedupContainer {
            container: s.rec.name.clone(),
            mounted: s.held.is_none(),
            private_files_before: files_before,
            private_bytes_before: bytes_before,
            ..DedupContainer::default()
        };
        let mut sizes: HashMap<u64, u64> = HashMap::new();
        for f in p.files.iter().filter(|f| f.ct == ci) {
            if by_inode.contains_key(&s.view.entries[f.entry].inode) {
                sizes.insert(s.view.entries[f.entry].inode, f.size);
            }
        }
        let (mut files, mut bytes) = (sizes.len() as u64, sizes.values().sum::<u64>());
        if !dry_run && files > 0 {
            match &s.held {
                Some(_) => {} // staged and installed together below
                None => {
                    let reqs: Vec<ShareRequest> = p
                        .files
                        .iter()
                        .filter(|f| f.ct == ci)
                        .filter_map(|f| {
                            let ino = s.view.entries[f.entry].inode;
                            by_inode.get(&ino).map(|&hash| ShareRequest {
                                ino,
                                hash,
                                stamp: f.stamp,
                            })
                        })
                        .collect();
                    let private = container::private_dir(store, &s.rec.name);
                    match share::request(&private, &reqs, Duration::from_secs(30))? {
                        Some(applied) if applied == files => {}
                        Some(applied) => {
                            // Some were open or written meanwhile: count what was done.
                            let after = view::fuse_view(s.base.clone(), &private)?;
                            let (_, left) = private_of(&after, 0..after.entries.len());
                            files = applied;
                            bytes = bytes_before.saturating_sub(left);
                        }
                        None => {
                            row.skipped = Some("its daemon did not answer; nothing changed".into());
                            files = 0;
                            bytes = 0;
                        }
                    }
                }
            }
        }
        row.shared_again_files = files;
        row.shared_again_bytes = bytes;
        row.private_files_after = files_before - files.min(files_before);
        row.private_bytes_after = bytes_before.saturating_sub(bytes);
        sum.containers.push(row);
    }
    // The held containers' new areas: written in parallel, made durable
    // with one syncfs, installed.
    if !dry_run {
        let staged: Vec<Staged> = subjects
            .par_iter()
            .zip(&p.per_ct)
            .filter(|(_, by_inode)| !by_inode.is_empty())
            .filter_map(|(s, by_inode)| s.held.as_ref().map(|h| (h, by_inode)))
            .map(|(h, by_inode)| stage_shared(store, h, by_inode, &hashes))
            .collect::<Result<_>>()?;
        install(store, &staged, Switch::AreaOnly)?;
        log::info!("dedup: {} areas rewritten: {:.3} s", staged.len(), took());
    }
    drop(session);
    let again: u64 = sum.containers.iter().map(|c| c.shared_again_bytes).sum();
    sum.freed_bytes = again.saturating_sub(sum.new_object_bytes);
    sum.containers.sort_by(|a, b| a.container.cmp(&b.container));
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}

/// Private bytes a dedup would free now (for `report`): nothing is locked,
/// pinned or changed; mounted containers are read as they are.
pub fn would_free(store: &Store) -> Result<u64> {
    let mut subjects = Vec::new();
    for ct in all_names(store)? {
        let db = Catalog::open_read_only(store)?;
        let Some(rec) = db.container(&ct)? else {
            continue;
        };
        let Ok(base) = db.manifest(&rec.template, rec.version) else {
            continue;
        };
        drop(db);
        let private = container::private_dir(store, &ct);
        let view = match rec.backend {
            Backend::Fuse => view::fuse_view(base.clone(), &private)?,
            Backend::Kernel => upper_view::view(&base, &private)?,
        };
        subjects.push(Subject {
            rec,
            base,
            view,
            held: None,
        });
    }
    let p = plan(&subjects, &mut |h, size| {
        Ok(std::fs::metadata(store.object_path(h)).is_ok_and(|m| m.len() == size))
    })?;
    let mut again = 0;
    for f in &p.files {
        if p.per_ct[f.ct].contains_key(&subjects[f.ct].view.entries[f.entry].inode) {
            again += f.size;
        }
    }
    let new: u64 = p.to_store.values().map(|&k| p.files[k].size).sum();
    Ok(again.saturating_sub(new))
}

fn all_names(store: &Store) -> Result<Vec<String>> {
    Ok(Catalog::open_read_only(store)?
        .containers()?
        .into_iter()
        .map(|c| c.name)
        .collect())
}

/// A mounted FUSE container as it is now; `None` for a kernel one, or for
/// one that is not mounted but held by another command (a rebase).
fn read_mounted(store: &Store, ct: &str, mounted: IsMounted<'_>) -> Result<Option<Subject>> {
    let db = Catalog::open_read_only(store)?;
    let rec = db
        .container(ct)?
        .ok_or_else(|| Error::ContainerNotFound(ct.to_string()))?;
    if rec.backend != Backend::Fuse || !mounted(&rec)? {
        return Ok(None);
    }
    let base = db.manifest(&rec.template, rec.version)?;
    drop(db);
    let view = view::fuse_view(base.clone(), &container::private_dir(store, ct))?;
    Ok(Some(Subject {
        rec,
        base,
        view,
        held: None,
    }))
}

/// A held container's area with `by_inode` shared, staged for install (a
/// merge onto its own base, so files equal to their base path become base
/// inodes again).
fn stage_shared(
    store: &Store,
    h: &crate::lifecycle::Held,
    by_inode: &HashMap<u64, Hash>,
    hashes: &HashMap<PathBuf, Hash>,
) -> Result<Staged> {
    let after = h.view.with_shared(by_inode);
    let hash = |p: &std::path::Path| view::hash_known(hashes, p);
    let merged = merge::merge(&h.base, &h.base, &after, &hash)?;
    let after = merged.view_after(&after);
    stage(store, &h.private, &h.rec, &h.base, &after, &merged.picks)
}
