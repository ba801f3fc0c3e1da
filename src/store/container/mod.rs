//! Containers: a record naming a base template version, and a private area
//! `private/<CT>/` holding the container's own changes (see [`tree`] and
//! [`journal`]). Creating one writes a database record and an empty directory.
//!
//! A mounted container is marked by its mount daemon holding an flock on
//! `private/<CT>/mount.lock` for its whole life; `mountpoint` there names where.

pub mod error;
pub mod journal;
pub mod table;
pub mod tree;

use std::fs::{self, File, OpenOptions};
use std::path::PathBuf;

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::meta::{ContainerRecord, MetaDb};
use crate::store::name::{self, TemplateRef};

/// Directory of a container's private area.
pub fn private_dir(store: &Store, name: &str) -> PathBuf {
    store.private_dir().join(name)
}

/// Create containers `names` from template `tref`, all or none: their private
/// directories first, then one database batch naming them all.
pub fn create(store: &Store, names: &[String], tref: &TemplateRef) -> Result<Vec<ContainerRecord>> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        name::validate(name)?;
        if !seen.insert(name) {
            return Err(Error::InUse(format!("container {name} is named twice")));
        }
    }
    let db = MetaDb::open(store)?;
    for name in names {
        if db.container(name)?.is_some() {
            return Err(Error::InUse(format!("container {name} already exists")));
        }
    }
    let t = db.resolve(tref)?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut recs = Vec::with_capacity(names.len());
    for name in names {
        let dir = private_dir(store, name);
        if dir.exists() {
            // Leftover of a create or destroy that died midway; nothing refers to it.
            fs::remove_dir_all(&dir).at(&dir)?;
        }
        fs::create_dir(&dir).at(&dir)?;
        recs.push(ContainerRecord {
            name: name.clone(),
            template: t.name.clone(),
            version: t.version,
            created,
        });
    }
    db.put_containers(&recs)?;
    Ok(recs)
}

/// The lock a mount daemon holds; `None` if another process holds it (mounted).
pub fn try_lock_mount(store: &Store, name: &str) -> Result<Option<File>> {
    let p = private_dir(store, name).join("mount.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .at(&p)?;
    Ok(fsutil::lock_exclusive(&f, false).at(&p)?.then_some(f))
}

/// Whether a daemon currently serves the container.
pub fn is_mounted(store: &Store, name: &str) -> Result<bool> {
    if !private_dir(store, name).exists() {
        return Ok(false);
    }
    Ok(try_lock_mount(store, name)?.is_none())
}

/// Remove a container: its record, then its private area. Refuses a mounted one
/// (the caller unmounts first when forced).
pub fn destroy(store: &Store, name: &str) -> Result<()> {
    name::validate(name)?;
    let db = MetaDb::open(store)?;
    if db.container(name)?.is_none() {
        return Err(Error::InUse(format!("container {name} does not exist")));
    }
    let _lock = match try_lock_mount(store, name)? {
        Some(l) => l,
        None => {
            return Err(Error::InUse(format!(
                "container {name} is mounted; unmount it first or use --force"
            )));
        }
    };
    db.remove_container(name)?;
    drop(db);
    let dir = private_dir(store, name);
    fs::remove_dir_all(&dir).at(&dir)?;
    Ok(())
}
