//! `rebase`: move an unmounted container to another template version keeping
//! its own changes (the three-way merge of [`super::merge`]), atomically: the
//! new area is written in `next/`, the catalog switches the base and the
//! container's extra object references in one batch, then the area is
//! installed (`container::pending`). Private files are hardlinked into the
//! new area, never copied; a kernel container's upper directory is written
//! afresh for the new image.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::container::{pending, restate, upper_write, view};
use crate::lifecycle::merge::{self, MergeReport, Pick};
use crate::lifecycle::{IsMounted, Run, hold_all};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord, TemplateRecord};
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

/// One container's part of a rebase, between its merge and the commit.
struct Planned {
    held: crate::lifecycle::Held,
    out: RebaseOutcome,
    rec: ContainerRecord,
    view: view::View,
    picks: Vec<(Vec<u8>, Pick)>,
}

/// Rebase containers `cts` onto `to`. Each container moves atomically (and,
/// as one catalog batch commits them, all that got that far move together);
/// one that cannot be taken or merged is reported and left as it was.
/// `known` gives hashes of private files already computed (by a commit), so
/// they are not read again.
pub fn rebase(
    store: &Store,
    cts: &[String],
    to: &TemplateRef,
    run: Run,
    mounted: IsMounted<'_>,
    known: &HashMap<PathBuf, Hash>,
) -> Result<Vec<(String, Result<RebaseOutcome>)>> {
    let db = Catalog::open_read_only(store)?;
    let target = db.resolve(to)?;
    db.require_whole(&target.name, target.version, "rebase")?;
    let new = db.manifest(&target.name, target.version)?;
    drop(db);
    let mut results: Vec<(String, Result<RebaseOutcome>)> = Vec::new();
    let mut planned = Vec::new();
    let held = hold_all(store, cts, "rebase", mounted)?;
    let plans: Vec<_> = held
        .into_par_iter()
        .map(|(ct, held)| {
            let plan = held.and_then(|h| plan_one(h, &target, &new, run, known));
            (ct, plan)
        })
        .collect();
    for (ct, plan) in plans {
        match plan {
            Ok(Ok(p)) => planned.push(p),
            Ok(Err(done)) => results.push((ct.clone(), Ok(done))),
            Err(e) => results.push((ct.clone(), Err(e))),
        }
    }
    if run == Run::Apply && !planned.is_empty() {
        if planned.iter().any(|p| p.rec.backend == Backend::Kernel) {
            // The new base's image, before anything refers to it.
            let checked = image::open_checked(store, &target, &mut || Ok(new.clone()))?;
            if let Some((digest, h)) = checked.record {
                Catalog::open(store)?.set_template_image(&target, digest, h)?;
            }
        }
        let staged: Vec<Staged> = planned
            .par_iter()
            .map(|p| stage(store, &p.held.private, &p.rec, &new, &p.view, &p.picks))
            .collect::<Result<_>>()?;
        install(store, &staged, Switch::Record)?;
    }
    results.extend(
        planned
            .into_iter()
            .map(|p| (p.out.container.clone(), Ok(p.out))),
    );
    Ok(results)
}

/// Take and merge one container: `Ok(Err(outcome))` when there is nothing to
/// do (already on that version).
fn plan_one(
    held: crate::lifecycle::Held,
    target: &TemplateRecord,
    new: &Manifest,
    run: Run,
    known: &HashMap<PathBuf, Hash>,
) -> Result<std::result::Result<Planned, RebaseOutcome>> {
    let mut out = RebaseOutcome {
        container: held.rec.name.clone(),
        from: held.rec.base_label(),
        to: target.label(),
        dry_run: run == Run::DryRun,
        unchanged: false,
        paths: MergeReport::default(),
        private_files: 0,
        private_bytes: 0,
    };
    if target.name == held.rec.template && target.version == held.rec.version {
        out.unchanged = true;
        (out.private_files, out.private_bytes) = private_of(&held.view, 0..held.view.entries.len());
        return Ok(Err(out));
    }
    let hash = |p: &Path| view::hash_known(known, p);
    let mut merged = merge::merge(&held.base, new, &held.view, &hash)?;
    out.paths = std::mem::take(&mut merged.report);
    let view = merged.view_after(&held.view);
    (out.private_files, out.private_bytes) = private_of(
        &view,
        merged.picks.iter().filter_map(|(_, p)| match *p {
            Pick::Own(i) => Some(i),
            Pick::Base(_) => None,
        }),
    );
    let mut rec = held.rec.clone();
    rec.template = target.name.clone();
    rec.version = target.version;
    Ok(Ok(Planned {
        held,
        out,
        rec,
        view,
        picks: merged.picks,
    }))
}

/// A container's new area written in `next/`, not yet durable.
pub(crate) struct Staged {
    private: PathBuf,
    /// The record it belongs to (its base: the new one).
    rec: ContainerRecord,
    /// Objects the area refers to beyond its base.
    refs: Vec<Hash>,
}

/// Write the container's new area for base `new` (`picks` over `new` and
/// `view`) into `next/`, without syncing.
pub(crate) fn stage(
    store: &Store,
    private: &Path,
    rec: &ContainerRecord,
    new: &Manifest,
    view: &view::View,
    picks: &[(Vec<u8>, Pick)],
) -> Result<Staged> {
    let next = pending::prepare(private)?;
    match rec.backend {
        Backend::Fuse => restate::write_fuse_state(new, view, picks, &next)?,
        Backend::Kernel => upper_write::write_upper(store, new, view, picks, &next)?,
    }
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
    Ok(Staged {
        private: private.to_path_buf(),
        rec: rec.clone(),
        refs,
    })
}

/// Whether installing areas switches the containers' records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// A rebase: records and references switch in one catalog batch (the
    /// commit point).
    Record,
    /// Same base (dedup): the area is equivalent either way; the references
    /// were committed before.
    AreaOnly,
}

/// Make staged areas durable (one syncfs for all), commit them, and install
/// them (`container::pending`).
pub(crate) fn install(store: &Store, staged: &[Staged], switch: Switch) -> Result<()> {
    failpoint_io("rebase-written").at(store.root())?;
    let sealed: Vec<(&Path, String)> = staged
        .iter()
        .map(|s| (s.private.as_path(), s.rec.base_label()))
        .collect();
    pending::seal_all(store.root(), &sealed)?;
    if switch == Switch::Record {
        let batch: Vec<(&ContainerRecord, &[Hash])> =
            staged.iter().map(|s| (&s.rec, s.refs.as_slice())).collect();
        Catalog::open(store)?.rebase_containers(&batch)?;
    }
    failpoint_io("rebase-committed").at(store.root())?;
    for s in staged {
        pending::settle(&s.private, &s.rec)?;
    }
    // The replaced areas are freed in the background.
    crate::store::reap::spawn(store);
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
