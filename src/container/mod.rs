//! Containers: a catalog record naming a base template version and a backend,
//! and a private area `private/<CT>/` holding the container's own changes (see
//! [`tree`] and [`journal`]). Creating one writes a record and an empty
//! directory; nothing of the template is copied.
//!
//! A mounted container is marked by its mount daemon holding an flock on
//! `private/<CT>/mount.lock` for its whole life; `mountpoint` there names where.
//!
//! Module layering (no cycles): [`inode`] (types) <- [`table`], [`journal`],
//! [`base`] <- [`tree`], [`view`]; [`error`] is used by all.

pub(crate) mod base;
pub mod error;
pub mod inode;
pub mod journal;
pub(crate) mod pending;
pub(crate) mod restate;
pub mod share;
pub(crate) mod table;
pub mod tree;
pub mod upper;
pub mod upper_view;
pub(crate) mod upper_write;
pub mod view;

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::PathBuf;

use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fstree;
use crate::store::fsutil;
use crate::store::image;
use crate::store::lock;
use crate::store::name::{self, TemplateRef};
use crate::store::time;

/// Directory of a container's private area.
pub fn private_dir(store: &Store, name: &str) -> PathBuf {
    store.container_dir(name)
}

/// Create containers `names` from template `tref`, served by `backend`, all or
/// none: their private directories first, then one catalog batch naming them.
pub fn create(
    store: &Store,
    names: &[String],
    tref: &TemplateRef,
    backend: Backend,
) -> Result<Vec<ContainerRecord>> {
    let mut seen = HashSet::new();
    for name in names {
        name::validate(name)?;
        if !seen.insert(name) {
            return Err(Error::DuplicateName(name.clone()));
        }
    }
    let db = Catalog::open(store)?;
    for name in names {
        if db.container(name)?.is_some() {
            return Err(Error::ContainerExists(name.clone()));
        }
    }
    let t = db.resolve(tref)?;
    // A kernel container needs its template's image (made now if an earlier
    // version ingested it, refused here if the template cannot have one) and
    // the template root's attributes for its upper directory.
    let kernel_root = match backend {
        Backend::Fuse => None,
        Backend::Kernel => {
            db.require_whole(&t.name, t.version, "a kernel container")?;
            let m = db.manifest(&t.name, t.version)?;
            let checked = image::open_checked(store, &t, &mut || Ok(m.clone()))?;
            if let Some((digest, hash)) = checked.record {
                db.set_template_image(&t, digest, hash)?;
            }
            m.entries.into_iter().next()
        }
    };
    let created = time::now_secs();
    let mut recs: Vec<ContainerRecord> = Vec::with_capacity(names.len());
    for name in names {
        let dir = private_dir(store, name);
        if dir.exists() {
            // Leftover of a create or destroy that died midway; nothing refers to it.
            fstree::remove(&dir).at(&dir)?;
        }
        fsutil::create_private_dir(&dir).at(&dir)?;
        let made = match &kernel_root {
            Some(root) => upper::create(&dir, root),
            None => {
                // data/ now, so that mounting later needs no new directory (a
                // mount must work on a full disk).
                let data = dir.join("data");
                fsutil::create_private_dir(&data).at(&data)
            }
        };
        if let Err(e) = made {
            let _ = fstree::remove(&dir);
            for done in &recs {
                let _ = fstree::remove(&private_dir(store, &done.name));
            }
            return Err(e);
        }
        recs.push(ContainerRecord {
            name: name.clone(),
            template: t.name.clone(),
            version: t.version,
            created,
            backend,
        });
    }
    if let Err(e) = db.put_containers(&recs) {
        // None of them exists: take their directories away again.
        for name in names {
            let _ = fstree::remove(&private_dir(store, name));
        }
        return Err(e);
    }
    Ok(recs)
}

/// The lock a mount daemon holds; `None` if another process holds it (mounted).
pub fn try_lock_mount(store: &Store, name: &str) -> Result<Option<File>> {
    lock::try_acquire(&private_dir(store, name).join("mount.lock"))
}

/// Whether a daemon currently serves the container.
pub fn is_mounted(store: &Store, name: &str) -> Result<bool> {
    if !private_dir(store, name).exists() {
        return Ok(false);
    }
    Ok(try_lock_mount(store, name)?.is_none())
}

/// Remove a container: its record, then its private area. Refuses a mounted one
/// (the caller unmounts first when forced): `mounted` says whether its backend
/// serves it; it is asked while the container's mount lock is held, so no
/// mount can start meanwhile.
pub fn destroy(
    store: &Store,
    name: &str,
    mounted: &dyn Fn(&ContainerRecord) -> Result<bool>,
) -> Result<()> {
    name::validate(name)?;
    let Some(rec) = Catalog::open_read_only(store)?.container(name)? else {
        return Err(Error::ContainerNotFound(name.to_string()));
    };
    // The mount lock before the catalog, the order a kernel mount takes them.
    // A FUSE daemon holds it for its life (so it is only tried); a kernel
    // mount only while it sets up (so destroy waits for that).
    let _lock = match rec.backend {
        Backend::Fuse => match try_lock_mount(store, name)? {
            Some(l) => l,
            None => return Err(Error::Mounted(name.to_string())),
        },
        Backend::Kernel => lock::acquire(&private_dir(store, name).join("mount.lock"))?,
    };
    if mounted(&rec)? {
        return Err(Error::Mounted(name.to_string()));
    }
    // Something mounted inside the private area (by mistake or malice) is
    // refused before anything is removed: removal never crosses into it.
    let dir = private_dir(store, name);
    if let Some(p) = fstree::mount_inside(&dir).at(&dir)? {
        return Err(Error::BadDestination {
            path: p,
            reason: "a file system is mounted inside the container's private area; unmount it first",
        });
    }
    let db = Catalog::open(store)?;
    if db.container(name)?.is_none() {
        return Err(Error::ContainerNotFound(name.to_string())); // destroyed meanwhile
    }
    db.remove_container(name)?;
    drop(db);
    fstree::remove(&dir).at(&dir)?;
    // Its default mount point, if empty (never anything mounted or stored there).
    let _ = fs::remove_dir(store.mount_dir().join(name));
    Ok(())
}
