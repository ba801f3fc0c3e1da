//! Lock files: the one idiom for "only one process at a time" in the store. A lock
//! is an `flock` on a file that stays in place; the kernel drops it when the
//! holder exits, however it exits, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::path::Path;

use crate::store::error::{IoContext, Result};
use crate::store::fsutil;

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .at(path)
}

/// Take the exclusive lock on `path` (creating the file if needed), waiting as
/// long as another process holds it. The returned file holds the lock until
/// dropped.
pub fn acquire(path: &Path) -> Result<File> {
    let f = open(path)?;
    fsutil::lock_exclusive(&f, true).at(path)?;
    Ok(f)
}

/// Take the exclusive lock on `path` if it is free; `None` when another process
/// holds it.
pub fn try_acquire(path: &Path) -> Result<Option<File>> {
    let f = open(path)?;
    Ok(fsutil::lock_exclusive(&f, false).at(path)?.then_some(f))
}

/// Whether process `pid` runs (a zombie, killed but not yet reaped, does not).
pub(crate) fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which ends at the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}
