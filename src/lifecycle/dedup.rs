//! `dedup`: private files of containers whose bytes equal a stored object, or
//! another container's private file, become shared again.
//!
//! Per run: every private file of the chosen containers is hashed (in
//! parallel); a hash the store holds, or that two containers' files (or two
//! inodes) have, is an object: pinned in a write session, staged once from
//! one of the files when new, published. The containers' references to these
//! objects are committed (one batch) while the session still pins them, so a
//! concurrent gc keeps them; only then are the containers' areas rewritten
//! (`container::pending`, as for a rebase onto the same base: a file equal to
//! its base path's becomes the base's inode again, any other refers to the
//! object and is copied up again on its next write). A crash at any point
//! leaves each container before or after, and at worst references to objects
//! it no longer uses (kept until its next rebase or dedup).
//!
//! A kernel container can only share bytes its template's image has: an upper
//! file equal to an object of its base becomes a metadata-only upper file
//! pointing at that object's path in the image (or goes when its metadata is
//! the base's too). Everything else stays private and is reported so.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::container::view::{self, View};
use crate::ingest::{NoProgress, ObjectSink};
use crate::lifecycle::merge;
use crate::lifecycle::rebase::{install, private_of};
use crate::lifecycle::{Held, IsMounted, hold};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog};
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::session::Session;

/// What dedup did to one container.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DedupContainer {
    pub container: String,
    /// Private files (inodes) before, and how many became shared.
    pub private_files_before: u64,
    pub private_bytes_before: u64,
    pub shared_again_files: u64,
    pub shared_again_bytes: u64,
    pub private_files_after: u64,
    pub private_bytes_after: u64,
    /// Why nothing was done (mounted), if so.
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
    pub seconds: f64,
}

/// One private inode of a held container.
struct PrivateFile {
    ct: usize,
    entry: usize,
    path: PathBuf,
}

/// Dedup `names` (every container when empty). Mounted containers are skipped
/// and reported.
pub fn dedup(
    store: &Store,
    names: &[String],
    dry_run: bool,
    mounted: IsMounted<'_>,
) -> Result<DedupSummary> {
    let started = Instant::now();
    let names: Vec<String> = if names.is_empty() {
        Catalog::open_read_only(store)?
            .containers()?
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        names.to_vec()
    };
    let mut sum = DedupSummary::default();
    let mut held: Vec<Held> = Vec::new();
    for ct in &names {
        match hold(store, ct, "dedup", mounted) {
            Ok(h) => held.push(h),
            Err(crate::store::Error::MountedRefused { .. }) => {
                sum.containers.push(DedupContainer {
                    container: ct.clone(),
                    skipped: Some("mounted: unmount it to dedup it".into()),
                    ..DedupContainer::default()
                })
            }
            Err(e) => return Err(e),
        }
    }
    // Every private inode once.
    let mut files = Vec::new();
    for (ci, h) in held.iter().enumerate() {
        let mut seen = HashSet::new();
        for (i, p) in h.view.private_files() {
            if seen.insert(h.view.entries[i].inode) {
                files.push(PrivateFile {
                    ct: ci,
                    entry: i,
                    path: p.to_path_buf(),
                });
            }
        }
    }
    let hashed: Vec<(Hash, u64)> = files
        .par_iter()
        .map(|f| view::hash_private(&f.path))
        .collect::<Result<_>>()?;
    let known: HashMap<PathBuf, Hash> = files
        .iter()
        .zip(&hashed)
        .map(|(f, (h, _))| (f.path.clone(), *h))
        .collect();
    // A kernel container can only point at bytes its image has at the same
    // path (overlayfs: one upper inode per template inode; see upper_write).
    let same_path = |f: &PrivateFile, h: &Hash| -> bool {
        let held = &held[f.ct];
        let path = &held.view.entries[f.entry].entry.path;
        held.base
            .entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &held.base.entries[i])
            .is_some_and(|b| b.hash == Some(*h) && b.link_group == 0)
    };
    let is_fuse = |f: &PrivateFile| held[f.ct].rec.backend == Backend::Fuse;
    // Contents held by FUSE containers, counted per inode.
    let mut holders: HashMap<Hash, usize> = HashMap::new();
    for (f, (h, _)) in files.iter().zip(&hashed) {
        if is_fuse(f) {
            *holders.entry(*h).or_default() += 1;
        }
    }
    let session = Session::begin(store)?;
    let sink = ObjectSink::new(&session, &NoProgress);
    // Which contents are (or become) objects; new ones are staged once.
    let mut stored: HashMap<Hash, bool> = HashMap::new();
    for (f, (h, size)) in files.iter().zip(&hashed) {
        if !is_fuse(f) || stored.contains_key(h) {
            continue;
        }
        let ok = if session.pin_and_check(h, *size)? {
            true
        } else if holders[h] >= 2 {
            if !dry_run {
                let file = File::open(&f.path).at(&f.path)?;
                let segs = fsutil::data_segments(&file, *size).at(&f.path)?;
                sink.store_file(&f.path, &file, &segs, *size, *h)?;
            }
            true
        } else {
            false
        };
        stored.insert(*h, ok);
    }
    if !dry_run {
        session.publish()?;
        fsutil::failpoint_io("dedup-published").at(store.root())?;
    }
    let counts = sink.counts();
    sum.new_objects = counts.new_objects;
    sum.new_object_bytes = counts.new_bytes;
    // Per container: which inodes become shared.
    let mut per_ct: Vec<HashMap<u64, Hash>> = vec![HashMap::new(); held.len()];
    for (f, (h, _)) in files.iter().zip(&hashed) {
        let ok = if is_fuse(f) {
            stored.get(h).copied().unwrap_or(false)
        } else {
            same_path(f, h)
        };
        if ok {
            per_ct[f.ct].insert(held[f.ct].view.entries[f.entry].inode, *h);
        }
    }
    if !dry_run {
        // References first, while the session still pins the objects.
        let db = Catalog::open(store)?;
        for (h, by_inode) in held.iter().zip(&per_ct) {
            let more: Vec<Hash> = by_inode.values().copied().collect();
            if !more.is_empty() && h.rec.backend == Backend::Fuse {
                db.add_container_refs(&h.rec.name, &more)?;
            }
        }
    }
    for (h, by_inode) in held.iter().zip(&per_ct) {
        let (files_before, bytes_before) = private_of(&h.view, 0..h.view.entries.len());
        let mut after: View = h.view.clone();
        let mut again = (0, 0);
        let mut done = HashSet::new();
        for e in &mut after.entries {
            if let Some(&hash) = by_inode.get(&e.inode) {
                if done.insert(e.inode) {
                    again.0 += 1;
                    again.1 += e.entry.size;
                }
                e.private = None;
                e.entry.hash = Some(hash);
            }
        }
        let mut row = DedupContainer {
            container: h.rec.name.clone(),
            private_files_before: files_before,
            private_bytes_before: bytes_before,
            shared_again_files: again.0,
            shared_again_bytes: again.1,
            private_files_after: files_before - again.0,
            private_bytes_after: bytes_before - again.1,
            skipped: None,
        };
        if again.0 > 0 && !dry_run {
            let hash = |p: &std::path::Path| -> Result<Hash> {
                match known.get(p) {
                    Some(h) => Ok(*h),
                    None => view::hash_private(p).map(|(h, _)| h),
                }
            };
            let merged = merge::merge(&h.base, &h.base, &after, &hash)?;
            install(store, &h.private, &h.rec, &h.base, &after, &merged.picks)?;
        }
        if again.0 == 0 {
            row.private_files_after = files_before;
            row.private_bytes_after = bytes_before;
        }
        sum.containers.push(row);
    }
    drop(session);
    sum.containers.sort_by(|a, b| a.container.cmp(&b.container));
    sum.seconds = started.elapsed().as_secs_f64();
    Ok(sum)
}
