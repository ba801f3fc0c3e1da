//! `rebase`: move an unmounted container to another template version keeping
//! its own changes (the three-way merge of [`super::merge`]), atomically: the
//! new area is written in `next/`, the catalog switches the base and the
//! container's extra object references in one batch, then the area is
//! installed (`container::pending`). Private files are hardlinked into the
//! new area, never copied; a kernel container's upper directory is written
//! afresh for the new image.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::container::{pending, restate, upper_write, view};
use crate::lifecycle::merge::{self, MergeReport, Pick};
use crate::lifecycle::{IsMounted, hold};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::IoContext;
use crate::store::error::Result;
use crate::store::fsutil::failpoint_io;
use crate::store::hash::Hash;
use crate::store::image;
use crate::store::manifest::Manifest;
use crate::store::name::TemplateRef;

/// What a rebase did (or, dry, would do) to one container.
#[derive(Clone, Debug, Serialize)]
pub struct RebaseOutcome {
    pub container: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// Already on that version: nothing to do.
    pub unchanged: bool,
    #[serde(flatten)]
    pub paths: MergeReport,
    /// Private files of the container after the rebase.
    pub private_files: u64,
    pub private_bytes: u64,
}

/// Rebase container `ct` onto `to`. `known` gives hashes of private files
/// already computed (by a commit), so they are not read again.
pub fn rebase(
    store: &Store,
    ct: &str,
    to: &TemplateRef,
    dry_run: bool,
    mounted: IsMounted<'_>,
    known: &HashMap<PathBuf, Hash>,
) -> Result<RebaseOutcome> {
    let held = hold(store, ct, "rebase", mounted)?;
    let db = Catalog::open_read_only(store)?;
    let target = db.resolve(to)?;
    let new = db.manifest(&target.name, target.version)?;
    drop(db);
    let mut out = RebaseOutcome {
        container: ct.to_string(),
        from: held.rec.base_label(),
        to: target.label(),
        dry_run,
        unchanged: false,
        paths: MergeReport::default(),
        private_files: 0,
        private_bytes: 0,
    };
    if target.name == held.rec.template && target.version == held.rec.version {
        out.unchanged = true;
        (out.private_files, out.private_bytes) = private_of(&held.view, 0..held.view.entries.len());
        return Ok(out);
    }
    let hash = |p: &Path| -> Result<Hash> {
        match known.get(p) {
            Some(h) => Ok(*h),
            None => view::hash_private(p).map(|(h, _)| h),
        }
    };
    let mut merged = merge::merge(&held.base, &new, &held.view, &hash)?;
    (out.private_files, out.private_bytes) = private_of(
        &held.view,
        merged.picks.iter().filter_map(|(_, p)| match *p {
            Pick::Own(i) => Some(i),
            Pick::Base(_) => None,
        }),
    );
    out.paths = std::mem::take(&mut merged.report);
    if dry_run {
        return Ok(out);
    }
    let mut rec = held.rec.clone();
    rec.template = target.name.clone();
    rec.version = target.version;
    if rec.backend == Backend::Kernel {
        // The new base's image, before anything refers to it.
        let db = Catalog::open_read_only(store)?;
        let checked = image::open_checked(store, &target, &mut || Ok(new.clone()))?;
        drop(db);
        if let Some((digest, h)) = checked.record {
            Catalog::open(store)?.set_template_image(&target, digest, h)?;
        }
    }
    let view = merged.view_after(&held.view);
    install(store, &held.private, &rec, &new, &view, &merged.picks)?;
    Ok(out)
}

/// Write the container's new area for base `new` (`picks` over `new` and
/// `view`), commit the record `rec` with the objects the area refers to beyond
/// `new`, and install the area. Shared by rebase and dedup.
pub(crate) fn install(
    store: &Store,
    private: &Path,
    rec: &ContainerRecord,
    new: &Manifest,
    view: &view::View,
    picks: &[(Vec<u8>, Pick)],
) -> Result<()> {
    let next = pending::prepare(private)?;
    match rec.backend {
        Backend::Fuse => restate::write_fuse_state(new, view, picks, &next)?,
        Backend::Kernel => upper_write::write_upper(store, new, view, picks, &next)?,
    }
    failpoint_io("rebase-written").at(&next)?;
    pending::seal(private, &rec.base_label())?;
    let in_base: HashSet<Hash> = new.objects().map(|(h, _)| h).collect();
    let mut refs: Vec<Hash> = picks
        .iter()
        .filter_map(|(_, p)| match *p {
            Pick::Own(i) => view.entries[i].entry.hash,
            Pick::Base(_) => None,
        })
        .filter(|h| !in_base.contains(h))
        .collect();
    refs.sort_unstable();
    refs.dedup();
    Catalog::open(store)?.rebase_container(rec, &refs)?;
    failpoint_io("rebase-committed").at(private)?;
    pending::settle(private, rec)?;
    Ok(())
}

/// Private files (each inode once) and their bytes among `entries` of `v`.
pub(crate) fn private_of(v: &view::View, entries: impl Iterator<Item = usize>) -> (u64, u64) {
    let mut seen = HashSet::new();
    let (mut n, mut b) = (0, 0);
    for i in entries {
        let e = &v.entries[i];
        if e.private.is_some() && seen.insert(e.inode) {
            n += 1;
            b += e.entry.size;
        }
    }
    (n, b)
}
