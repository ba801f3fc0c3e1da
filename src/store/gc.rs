//! Garbage collection: delete objects that nothing references, safely while
//! ingests and mounts run (invariant 3).
//!
//! Reachable = every object named by a committed template manifest, plus every hash
//! pinned by a live write session. Because a session may find an object present
//! and rely on it just as gc decides to delete it, gc never deletes directly:
//!
//! 1. read pins, then the database: first reachable set; list the objects;
//! 2. move each unreachable object into `tmp/gc-trash/` (so any session that checks
//!    from now on sees it missing and writes its own copy);
//! 3. read pins, then the database again: second reachable set. Anything that
//!    became reachable between 1 and 3 was pinned before its session checked for
//!    it, or was committed, so it shows up here and is moved back;
//! 4. delete the rest.
//!
//! Only one gc runs at a time (`locks/gc.lock`). A gc killed during step 2-4 leaves
//! `tmp/gc-trash/`; the next gc or verify moves its contents back first.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::PathBuf;

use crate::store::Store;
use crate::store::catalog::Catalog;
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::image;
use crate::store::lock;
use crate::store::objects;
use crate::store::session;

/// What a gc run did.
#[derive(Debug, Default, Clone)]
pub struct GcSummary {
    pub objects_before: u64,
    pub removed_objects: u64,
    /// Allocated bytes freed (what `du` no longer counts).
    pub freed_bytes: u64,
    /// Objects that were garbage at first look but became referenced meanwhile.
    pub rescued: u64,
    /// Leftover directories of crashed sessions that were removed.
    pub dead_sessions: u64,
    /// Kernel images no template version names any more.
    pub removed_images: u64,
}

/// The exclusive gc lock, held while gc or verify runs.
pub struct GcLock(#[allow(dead_code)] File);

/// Take the gc lock, waiting for a running gc or verify to finish, and move back
/// anything a crashed gc left in its trash.
pub fn lock(store: &Store) -> Result<GcLock> {
    let f = lock::acquire(&store.lock_path("gc"))?;
    recover_trash(store)?;
    Ok(GcLock(f))
}

fn trash_dir(store: &Store) -> PathBuf {
    store.tmp_dir().join("gc-trash")
}

fn recover_trash(store: &Store) -> Result<()> {
    let trash = trash_dir(store);
    let entries = match fs::read_dir(&trash) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(&trash),
    };
    for e in entries {
        let e = e.at(&trash)?;
        let name = e.file_name();
        if let Some(h) = Hash::from_hex(&name.to_string_lossy()) {
            let dest = store.object_path(&h);
            if !dest.exists() {
                fs::rename(e.path(), &dest).at(&dest)?;
                continue;
            }
        }
        fs::remove_file(e.path()).at(e.path())?;
    }
    fs::remove_dir(&trash).at(&trash)?;
    Ok(())
}

/// Every hash reachable from committed metadata (templates; containers once they
/// exist). Sessions' pins are added by the caller.
pub fn reachable_from_metadata(store: &Store) -> Result<HashSet<Hash>> {
    Catalog::open_read_only(store)?.referenced_objects()
}

fn reachable(store: &Store) -> Result<(HashSet<Hash>, Vec<PathBuf>)> {
    let scan = session::scan(store)?; // pins first, then the database
    let mut set = reachable_from_metadata(store)?;
    set.extend(scan.pinned);
    Ok((set, scan.dead))
}

/// Run one garbage collection. See the module documentation for the protocol.
pub fn gc(store: &Store) -> Result<GcSummary> {
    let _lock = lock(store)?;
    let started = std::time::SystemTime::now();
    let mut sum = GcSummary::default();
    // Replaced private areas a crash left parked.
    crate::store::reap::reap(store)?;
    let (first, dead) = reachable(store)?;
    for d in dead {
        fs::remove_dir_all(&d).at(&d)?;
        sum.dead_sessions += 1;
    }
    let listing = objects::list(store)?;
    sum.objects_before = listing.objects.len() as u64;
    let trash = trash_dir(store);
    fs::create_dir_all(&trash).at(&trash)?;
    let mut trashed = Vec::new();
    for o in listing.objects.iter().filter(|o| !first.contains(&o.hash)) {
        let t = trash.join(o.hash.to_hex());
        match fs::rename(&o.path, &t) {
            Ok(()) => trashed.push(o),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at(&o.path),
        }
    }
    // Test builds: stop here, as a gc killed with objects in its trash would.
    fsutil::failpoint_io("gc-trashed").at(&trash)?;
    let (second, _) = reachable(store)?;
    for o in trashed {
        let t = trash.join(o.hash.to_hex());
        if second.contains(&o.hash) {
            if o.path.exists() {
                fs::remove_file(&t).at(&t)?; // a session already wrote it again
            } else {
                fs::rename(&t, &o.path).at(&o.path)?;
            }
            sum.rescued += 1;
        } else {
            fs::remove_file(&t).at(&t)?;
            sum.removed_objects += 1;
            sum.freed_bytes += o.allocated;
        }
    }
    fs::remove_dir(&trash).at(&trash)?;
    // Kernel images of removed template versions (templates rm removes them;
    // this catches a crash in between).
    let wanted = image::wanted(store, &Catalog::open_read_only(store)?)?;
    let (n, bytes) = image::remove_unused(store, &wanted, started)?;
    sum.removed_images = n;
    sum.freed_bytes += bytes;
    Ok(sum)
}
