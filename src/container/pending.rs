//! Replacing a container's private area and its base in one step that a crash
//! cannot split (rebase, dedup of an unmounted container).
//!
//! 1. The new area is written in `private/<CT>/next/` (the same items as the
//!    area: `state`, `journal`, `data/` of a FUSE container; `upper/`, `work/`
//!    of a kernel one), made durable, and `next/target` names the base it
//!    belongs to (`template@version`), written last.
//! 2. The catalog record is switched to that base (one synced batch): the
//!    commit point.
//! 3. [`settle`] moves every item of `next/` over the old one (a directory via
//!    `<item>.old`, removed afterwards) and removes `next/`.
//!
//! Whatever reads or mounts the area calls [`settle`] first, under the
//! container's mount lock: with `next/target` naming the record's base, the
//! move is finished (each step is idempotent); otherwise (a crash before the
//! commit) `next/` is thrown away. So after a crash at any point the container
//! is wholly on its old base with its old area or wholly on the new one.

use std::fs;
use std::path::{Path, PathBuf};

use crate::store::Result;
use crate::store::catalog::ContainerRecord;
use crate::store::error::IoContext;
use crate::store::fstree;
use crate::store::fsutil;

const TARGET: &str = "target";

/// `private/<CT>/next`.
pub(crate) fn next_dir(private: &Path) -> PathBuf {
    private.join("next")
}

/// An empty `next/` (a leftover of an earlier attempt is removed).
pub(crate) fn prepare(private: &Path) -> Result<PathBuf> {
    let next = next_dir(private);
    if fs::symlink_metadata(&next).is_ok() {
        fstree::remove(&next).at(&next)?;
    }
    fsutil::create_private_dir(&next).at(&next)?;
    Ok(next)
}

/// Make the `next/` areas of several containers durable (one `syncfs` of
/// the store's file system) and name the base each belongs to (`target`,
/// written after, made durable by a second `syncfs`). After this, the caller
/// commits the records; then [`settle`] installs each.
pub(crate) fn seal_all(store_root: &Path, areas: &[(&Path, String)]) -> Result<()> {
    fsutil::sync_fs(store_root).at(store_root)?;
    for (private, label) in areas {
        let next = next_dir(private);
        let tmp = next.join("target.new");
        fs::write(&tmp, label).at(&tmp)?;
        let target = next.join(TARGET);
        fs::rename(&tmp, &target).at(&target)?;
    }
    fsutil::sync_fs(store_root).at(store_root)
}

/// Finish or discard a replacement left by a crash (see the module
/// documentation). Call with the container's mount lock held. Returns true
/// when a replacement was installed.
pub(crate) fn settle(private: &Path, rec: &ContainerRecord) -> Result<bool> {
    let next = next_dir(private);
    match fs::symlink_metadata(&next) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sweep(private)?;
            return Ok(false);
        }
        Err(e) => return Err(e).at(&next),
        Ok(_) => {}
    }
    let target = fs::read_to_string(next.join(TARGET)).ok();
    if target.as_deref() != Some(rec.base_label().as_str()) {
        // Never committed: the old area is the container's.
        fstree::remove(&next).at(&next)?;
        return Ok(false);
    }
    install(private, &next)?;
    Ok(true)
}

/// Move each item of `next/` over its namesake, then remove `next/`.
fn install(private: &Path, next: &Path) -> Result<()> {
    let mut items: Vec<_> = fs::read_dir(next)
        .at(next)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .at(next)?;
    items.sort();
    for name in items.iter().filter(|n| *n != TARGET) {
        let from = next.join(name);
        let to = private.join(name);
        let is_dir = fs::symlink_metadata(&from).at(&from)?.is_dir();
        if is_dir {
            let old = private.join(format!("{}.old", name.to_string_lossy()));
            if fs::symlink_metadata(&to).is_ok() {
                if fs::symlink_metadata(&old).is_ok() {
                    fstree::remove(&old).at(&old)?;
                }
                fs::rename(&to, &old).at(&to)?;
            }
            fs::rename(&from, &to).at(&to)?;
        } else {
            fs::rename(&from, &to).at(&to)?;
        }
        // Test builds: stop between two moves, as a crash would.
        fsutil::failpoint_io("settle-move").at(&to)?;
    }
    fsutil::sync_dir(private).at(private)?;
    fstree::remove(next).at(next)?;
    sweep(private)
}

/// Remove the replaced directories (`<item>.old`), now garbage: parked for
/// the background reaper (`store::reap`) when the store's `tmp/` is beside
/// `private/`, else removed here.
fn sweep(private: &Path) -> Result<()> {
    let store_root = private.parent().and_then(Path::parent);
    for e in fs::read_dir(private).at(private)? {
        let e = e.at(private)?;
        if e.file_name().to_string_lossy().ends_with(".old") && e.file_type().at(e.path())?.is_dir()
        {
            let parked =
                store_root.is_some_and(|root| crate::store::reap::park(root, &e.path()).is_ok());
            if !parked {
                fstree::remove(&e.path()).at(e.path())?;
            }
        }
    }
    Ok(())
}
