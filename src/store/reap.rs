//! Freeing replaced private areas in the background. Installing a rebase or
//! dedup leaves the old `data/` (or `upper/`) of each container: garbage, but
//! unlinking tens of thousands of files costs seconds (ext4 frees each
//! file's blocks). They are *parked* in `tmp/reap/` (one rename) and a
//! detached `vzstore reap` process removes them; `gc` removes whatever a
//! crash left there. Nothing refers to a parked directory.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::store::Store;
use crate::store::error::{IoContext, Result};
use crate::store::fstree;
use crate::store::fsutil;
use crate::store::lock;

/// `<store>/tmp/reap`, given the store's root.
fn reap_dir(store_root: &Path) -> PathBuf {
    store_root.join("tmp").join("reap")
}

/// Move garbage directory `dir` (on the store's file system) into the reap
/// directory under a unique name. On failure the caller removes it itself.
pub fn park(store_root: &Path, dir: &Path) -> std::io::Result<()> {
    let to = reap_dir(store_root);
    fsutil::create_private_dir(&to)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!(
        "{}-{}-{nanos}",
        std::process::id(),
        dir.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    fs::rename(dir, to.join(name))
}

/// Remove everything parked (never across a mount). One reaper at a time:
/// returns 0 at once when another holds the lock.
pub fn reap(store: &Store) -> Result<u64> {
    let Some(_lock) = lock::try_acquire(&store.lock_path("reap"))? else {
        return Ok(0);
    };
    let dir = reap_dir(store.root());
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).at(&dir),
    };
    let mut n = 0;
    for e in entries {
        let p = e.at(&dir)?.path();
        fstree::remove(&p).at(&p)?;
        n += 1;
    }
    Ok(n)
}

/// Start a detached `vzstore reap` for the store when anything is parked.
pub fn spawn(store: &Store) {
    let dir = reap_dir(store.root());
    if fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let started = Command::new(exe)
        .arg("--store")
        .arg(store.root())
        .arg("reap")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = started {
        log::warn!(
            "could not start the background removal of replaced areas: {e}; gc removes them"
        );
    }
}
