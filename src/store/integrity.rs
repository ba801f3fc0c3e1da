//! Checking objects before they are handed out. fs-verity is not available, so a
//! reader (the mount daemon, a copy-up) asks [`ObjectChecker::open_checked`]: the
//! object's size must match what the manifest says, always; its blake3 must match
//! its name, checked on the first open since the object last changed.
//!
//! "Last changed" is the object's ctime, which the kernel moves on every write,
//! truncate, chmod or rename of it and which no one can set back. A check that
//! passed is recorded as (hash, ctime); a record whose ctime no longer matches
//! the object is worthless, so any change to an object invalidates its record.
//! Records survive daemon restarts and are shared by every process:
//!
//! - `<store>/verified.log`: records appended by whoever checked an object, one
//!   `write` each (O_APPEND: atomic for such small writes);
//! - `<store>/verified`: the same records sorted by hash, written by
//!   compaction (when a process's log tail grows large, and by `verify`, which
//!   re-hashes everything anyway) and replaced by rename. Processes map it
//!   read-only and binary-search it, so a hundred mount daemons share one copy
//!   in the page cache instead of each holding every record on its heap.
//!
//! A record is 48 bytes: hash, ctime seconds, ctime nanoseconds, and a 4-byte
//! blake3 check of the first 44 bytes. A torn or damaged record is ignored (the
//! object is simply hashed again); losing records costs only re-hashing.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::objects;

const RECORD: usize = 48;
/// A process compacts once it holds this many records from the log.
const COMPACT_TAIL: usize = 8192;

/// An object's ctime: (seconds, nanoseconds).
pub type Ctime = (i64, u32);

/// What a process knows of the records: the mapped sorted file and the log
/// records read so far.
#[derive(Default)]
struct Known {
    sorted: Option<memmap2::Mmap>,
    tail: HashMap<Hash, Ctime>,
    /// Bytes of the log read, and the log's inode (a new log restarts at 0).
    log_read: u64,
    log_ino: u64,
}

impl Known {
    fn lookup(&self, hash: &Hash) -> Option<Ctime> {
        if let Some(c) = self.tail.get(hash) {
            return Some(*c);
        }
        let map = self.sorted.as_ref()?;
        let n = map.len() / RECORD;
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let r = &map[mid * RECORD..(mid + 1) * RECORD];
            match r[..32].cmp(&hash.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return decode(r).map(|(_, c)| c),
            }
        }
        None
    }
}

/// Checks objects on open and remembers which were verified. Shared by the
/// threads of one process.
pub struct ObjectChecker {
    store: Store,
    known: Mutex<Known>,
    /// Objects found corrupt, at the ctime they had: refused again at once
    /// (no re-hash) until they change.
    corrupt: Mutex<HashMap<Hash, Ctime>>,
    /// Where missing objects are fetched from (a lazily pulled template's
    /// remote), if anywhere.
    fallback: Option<std::sync::Arc<dyn crate::store::fetch::ObjectSource>>,
}

fn encode(hash: &Hash, ctime: Ctime) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[..32].copy_from_slice(&hash.0);
    r[32..40].copy_from_slice(&ctime.0.to_le_bytes());
    r[40..44].copy_from_slice(&ctime.1.to_le_bytes());
    let check = blake3::hash(&r[..44]);
    r[44..].copy_from_slice(&check.as_bytes()[..4]);
    r
}

fn decode(r: &[u8]) -> Option<(Hash, Ctime)> {
    if r.len() != RECORD || blake3::hash(&r[..44]).as_bytes()[..4] != r[44..] {
        return None;
    }
    let mut h = [0u8; 32];
    h.copy_from_slice(&r[..32]);
    let sec = i64::from_le_bytes(r[32..40].try_into().ok()?);
    let nsec = u32::from_le_bytes(r[40..44].try_into().ok()?);
    Some((Hash(h), (sec, nsec)))
}

fn sorted_path(store: &Store) -> PathBuf {
    store.root().join("verified")
}

fn log_path(store: &Store) -> PathBuf {
    store.root().join("verified.log")
}

fn map_sorted(store: &Store) -> Option<memmap2::Mmap> {
    let f = File::open(sorted_path(store)).ok()?;
    if f.metadata().ok()?.len() == 0 {
        return None;
    }
    crate::store::sys::map_readonly(&f).ok()
}

impl ObjectChecker {
    /// A checker for `store`, knowing every check recorded so far. Unreadable
    /// record files only cost re-hashing.
    pub fn new(store: &Store) -> ObjectChecker {
        let c = ObjectChecker {
            store: store.clone(),
            known: Mutex::new(Known::default()),
            corrupt: Mutex::new(HashMap::new()),
            fallback: None,
        };
        c.refresh(&mut c.lock_known());
        c
    }

    fn lock_corrupt(&self) -> std::sync::MutexGuard<'_, HashMap<Hash, Ctime>> {
        self.corrupt.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read log records appended since the last call (by any process); after a
    /// compaction (a new log), start over with the new sorted file.
    fn refresh(&self, k: &mut Known) {
        let path = log_path(&self.store);
        let Ok(mut f) = File::open(&path) else {
            return;
        };
        let Ok(m) = f.metadata() else { return };
        if m.ino() != k.log_ino || m.len() < k.log_read {
            k.tail.clear();
            k.log_read = 0;
            k.log_ino = m.ino();
            k.sorted = map_sorted(&self.store);
        }
        let mut data = Vec::new();
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(k.log_read)).is_err()
            || f.read_to_end(&mut data).is_err()
        {
            return;
        }
        let whole = data.len() / RECORD * RECORD;
        for r in data[..whole].chunks(RECORD) {
            if let Some((h, c)) = decode(r) {
                k.tail.insert(h, c);
            }
        }
        k.log_read += whole as u64;
    }

    fn is_verified(&self, hash: &Hash, ctime: Ctime) -> bool {
        let mut k = self.lock_known();
        if k.lookup(hash) == Some(ctime) {
            return true;
        }
        // Another process may have checked it meanwhile.
        self.refresh(&mut k);
        k.lookup(hash) == Some(ctime)
    }

    /// Whether an object file opened and checked earlier still is what was
    /// checked: `size` bytes and the ctime of a recorded check. One fstat.
    pub fn still_checked(&self, f: &File, hash: &Hash, size: u64) -> bool {
        match f.metadata() {
            Ok(m) => m.len() == size && self.is_verified(hash, (m.ctime(), m.ctime_nsec() as u32)),
            Err(_) => false,
        }
    }

    /// This checker, fetching missing objects from `source` first (the FUSE
    /// daemon of a lazily pulled template).
    pub fn with_fallback(
        mut self,
        source: std::sync::Arc<dyn crate::store::fetch::ObjectSource>,
    ) -> ObjectChecker {
        self.fallback = Some(source);
        self
    }

    /// Open object `hash` read-only if it is whole: present, `size` bytes long,
    /// and (unless verified since its ctime last changed) hashing to its name.
    /// Errors: [`Error::MissingObject`], [`Error::ObjectSize`],
    /// [`Error::CorruptObject`], or the I/O error that prevented the check.
    pub fn open_checked(&self, hash: &Hash, size: u64) -> Result<File> {
        let path = self.store.object_path(hash);
        let f = match (objects::open(&self.store, hash), &self.fallback) {
            (Err(Error::MissingObject(_)), Some(src)) => {
                crate::store::fetch::fetch_one(&self.store, src.as_ref(), hash, size)?;
                objects::open(&self.store, hash)?
            }
            (r, _) => r?,
        };
        let m = f.metadata().at(&path)?;
        if m.len() != size {
            return Err(Error::ObjectSize {
                hash: *hash,
                expected: size,
                found: m.len(),
            });
        }
        let ctime = (m.ctime(), m.ctime_nsec() as u32);
        if self.is_verified(hash, ctime) {
            return Ok(f);
        }
        if self.lock_corrupt().get(hash) == Some(&ctime) {
            return Err(Error::CorruptObject(*hash));
        }
        // Read, not mapped: a daemon must survive an object truncated under it.
        let actual = Hash::from(fsutil::hash_read(&f).at(&path)?);
        // The object must not have changed while it was hashed.
        let after = f.metadata().at(&path)?;
        if actual != *hash || (after.ctime(), after.ctime_nsec() as u32) != ctime {
            self.lock_corrupt().insert(*hash, ctime);
            return Err(Error::CorruptObject(*hash));
        }
        self.record(hash, ctime);
        Ok(f)
    }

    /// Remember that a file with content `hash` and this ctime was checked
    /// (a kernel image, checked by whoever mounts it).
    pub(crate) fn remember(&self, hash: &Hash, ctime: Ctime) {
        self.record(hash, ctime);
    }

    fn record(&self, hash: &Hash, ctime: Ctime) {
        let tail = {
            let mut k = self.lock_known();
            k.tail.insert(*hash, ctime);
            k.tail.len()
        };
        let path = log_path(&self.store);
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&encode(hash, ctime)));
        if let Err(e) = appended {
            log::debug!("{}: {e}", path.display());
        }
        if tail > COMPACT_TAIL {
            if let Err(e) = compact(&self.store, None) {
                log::debug!("compacting object check records: {e}");
            }
            self.refresh(&mut self.lock_known());
        }
    }
}

/// Merge the log into the sorted file (or, with `replace`, write exactly those
/// records: `verify` knows the state of every object). Skipped when another
/// process compacts. Records appended while this runs may be lost: that only
/// costs a re-hash.
pub fn compact(store: &Store, replace: Option<&[(Hash, Ctime)]>) -> Result<()> {
    let Some(_lock) = crate::store::lock::try_acquire(&store.lock_path("verified"))? else {
        return Ok(());
    };
    let mut all: std::collections::BTreeMap<Hash, Ctime> = Default::default();
    match replace {
        Some(recs) => all.extend(recs.iter().copied()),
        None => {
            if let Some(map) = map_sorted(store) {
                all.extend(map.chunks(RECORD).filter_map(decode));
            }
            if let Ok(data) = std::fs::read(log_path(store)) {
                all.extend(data.chunks(RECORD).filter_map(decode));
            }
        }
    }
    let mut buf = Vec::with_capacity(all.len() * RECORD);
    for (h, c) in &all {
        buf.extend_from_slice(&encode(h, *c));
    }
    let sorted = sorted_path(store);
    let tmp = store.tmp_dir().join("verified.new");
    create_private(&tmp)
        .and_then(|mut f| f.write_all(&buf))
        .at(&tmp)?;
    std::fs::rename(&tmp, &sorted).at(&sorted)?;
    let log = log_path(store);
    let tmp = store.tmp_dir().join("verified.log.new");
    create_private(&tmp).at(&tmp)?;
    std::fs::rename(&tmp, &log).at(&log)
}

/// A new, empty file only the owner can read or write, whatever the umask.
fn create_private(p: &std::path::Path) -> std::io::Result<File> {
    let _ = std::fs::remove_file(p);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_ignored() {
        let h = Hash::of(b"x");
        let r = encode(&h, (1_700_000_000, 42));
        assert_eq!(decode(&r), Some((h, (1_700_000_000, 42))));
        let mut bad = r;
        bad[35] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&r[..40]), None);
    }
}
