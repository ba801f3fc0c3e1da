//! The template lifecycle: containers move to another template version keeping
//! their changes ([`rebase`]), become templates ([`commit`]), and share again
//! what they changed alike ([`dedup`]). Works for both backends on what
//! `container::view` reads; never imports the mount layer (whether a container
//! is mounted is asked through a function the caller gives).
//!
//! Every change of a container's area goes through `container::pending`: the
//! new area is written beside the old one and installed after the catalog
//! commit, so a crash leaves a container wholly before or wholly after.

pub mod commit;
pub mod dedup;
pub mod merge;
pub mod rebase;

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::container::{self, pending, upper_view, view};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, Result};
use crate::store::lock;
use crate::store::manifest::Manifest;
use crate::store::name;

/// Whether a command changes anything or only says what it would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    Apply,
    DryRun,
}

/// Whether a container is mounted (asked of its backend by the caller).
pub type IsMounted<'a> = &'a (dyn Fn(&ContainerRecord) -> Result<bool> + Sync);

/// An unmounted container held for a change: its mount lock (no mount starts
/// meanwhile), its record, its base manifest and its current view.
pub struct Held {
    _lock: File,
    pub rec: ContainerRecord,
    pub private: PathBuf,
    pub base: Manifest,
    pub view: view::View,
}

/// Take container `ct` for `what` (see [`hold_all`]).
pub fn hold(store: &Store, ct: &str, what: &'static str, mounted: IsMounted<'_>) -> Result<Held> {
    let mut all = hold_all(store, std::slice::from_ref(&ct.to_string()), what, mounted)?;
    match all.pop() {
        Some((_, held)) => held,
        None => Err(Error::ContainerNotFound(ct.to_string())),
    }
}

/// Take containers `cts` for `what`, each on its own: one that is mounted
/// is refused ([`Error::MountedRefused`]), one that does not exist is an
/// error; the others are held. The catalog is read twice in all (before and
/// under the mount locks, as a rebase may move a container meanwhile) and each
/// base manifest decoded once. A replacement of an area left by a crash is
/// finished (or discarded) first; the views are read in parallel.
pub fn hold_all(
    store: &Store,
    cts: &[String],
    what: &'static str,
    mounted: IsMounted<'_>,
) -> Result<Vec<(String, Result<Held>)>> {
    let refused = |ct: &str| Error::MountedRefused {
        container: ct.to_string(),
        what,
    };
    let first: Vec<Option<ContainerRecord>> = {
        let db = Catalog::open_read_only(store)?;
        cts.iter()
            .map(|ct| db.container(ct))
            .collect::<Result<_>>()?
    };
    // A FUSE daemon holds the lock for its life; a kernel mount only while it
    // sets up (wait for that, then ask the kernel).
    let mut locks: Vec<Result<File>> = Vec::with_capacity(cts.len());
    for (ct, rec) in cts.iter().zip(&first) {
        locks.push(match (name::validate(ct), rec) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::ContainerNotFound(ct.clone())),
            (Ok(()), Some(r)) if r.backend == Backend::Fuse => {
                container::try_lock_mount(store, ct).and_then(|l| l.ok_or_else(|| refused(ct)))
            }
            (Ok(()), Some(_)) => {
                lock::acquire(&container::private_dir(store, ct).join("mount.lock"))
            }
        });
    }
    let mut bases: HashMap<(String, u32), Manifest> = HashMap::new();
    let mut taken: Vec<(String, Result<(File, ContainerRecord)>)> = Vec::new();
    {
        let db = Catalog::open_read_only(store)?;
        for (ct, lock) in cts.iter().zip(locks) {
            let t = lock.and_then(|lock| {
                let rec = db
                    .container(ct)?
                    .ok_or_else(|| Error::ContainerNotFound(ct.clone()))?;
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    bases.entry((rec.template.clone(), rec.version))
                {
                    slot.insert(db.manifest(&rec.template, rec.version)?);
                }
                Ok((lock, rec))
            });
            taken.push((ct.clone(), t));
        }
    }
    Ok(taken
        .into_par_iter()
        .map(|(ct, t)| {
            let held = t.and_then(|(lock, rec)| {
                // A FUSE container is unmounted when its lock could be taken
                // (its daemon holds it for life); a kernel one when no mount
                // of it is in any mount namespace.
                if rec.backend == Backend::Kernel && mounted(&rec)? {
                    return Err(refused(&ct));
                }
                let base = bases[&(rec.template.clone(), rec.version)].clone();
                let private = container::private_dir(store, &ct);
                pending::settle(&private, &rec)?;
                let view = match rec.backend {
                    Backend::Fuse => view::fuse_view(base.clone(), &private)?,
                    Backend::Kernel => upper_view::view(&base, &private)?,
                };
                Ok(Held {
                    _lock: lock,
                    rec,
                    private,
                    base,
                    view,
                })
            });
            (ct, held)
        })
        .collect())
}
