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

use std::fs::File;
use std::path::PathBuf;

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

/// Take container `ct` for `what`: refused when it is mounted. A replacement
/// of its area left by a crash is finished (or discarded) first.
pub fn hold(store: &Store, ct: &str, what: &'static str, mounted: IsMounted<'_>) -> Result<Held> {
    name::validate(ct)?;
    let refused = || Error::MountedRefused {
        container: ct.to_string(),
        what,
    };
    let private = container::private_dir(store, ct);
    let first = Catalog::open_read_only(store)?
        .container(ct)?
        .ok_or_else(|| Error::ContainerNotFound(ct.to_string()))?;
    // A FUSE daemon holds the lock for its life; a kernel mount only while it
    // sets up (wait for that, then ask the kernel).
    let lock = match first.backend {
        Backend::Fuse => container::try_lock_mount(store, ct)?.ok_or_else(refused)?,
        Backend::Kernel => lock::acquire(&private.join("mount.lock"))?,
    };
    let db = Catalog::open_read_only(store)?;
    // Read again under the lock: a rebase may have moved it meanwhile.
    let rec = db
        .container(ct)?
        .ok_or_else(|| Error::ContainerNotFound(ct.to_string()))?;
    // A FUSE container is unmounted when its lock could be taken; a kernel
    // one when no mount of it is in any mount table.
    if rec.backend == Backend::Kernel && mounted(&rec)? {
        return Err(refused());
    }
    let base = db.manifest(&rec.template, rec.version)?;
    drop(db);
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
}
