//! Checking objects before they are handed out. fs-verity is not available, so a
//! reader (the mount daemon, a copy-up) asks [`ObjectChecker::open_checked`]: the
//! object's size must match what the manifest says, always; its blake3 must match
//! its name, checked on the first open since the object last changed.
//!
//! "Last changed" is the object's ctime, which the kernel moves on every write,
//! truncate, chmod or rename of it and which no one can set back. A check that
//! passed is recorded as (hash, ctime) in `<store>/verified`, an append-only
//! file of fixed 48-byte records (hash, ctime seconds, ctime nanoseconds, a
//! 4-byte blake3 check of the first 44 bytes) that every process appends to with
//! one `write` (O_APPEND, atomic for such small writes). A record whose ctime no
//! longer matches the object is worthless, so any change to an object
//! invalidates its record; records survive daemon restarts. A torn or damaged
//! record is ignored (the object is simply hashed again).

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

/// An object's ctime: (seconds, nanoseconds).
type Ctime = (i64, u32);

/// Checks objects on open and remembers which were verified. Shared by the
/// threads of one process.
pub struct ObjectChecker {
    store: Store,
    path: PathBuf,
    known: Mutex<HashMap<Hash, Ctime>>,
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

impl ObjectChecker {
    /// A checker for `store`, knowing every verification recorded so far. An
    /// unreadable record file only costs re-hashing (logged).
    pub fn new(store: &Store) -> ObjectChecker {
        let path = store.root().join("verified");
        let mut known = HashMap::new();
        let mut data = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut data)) {
            Ok(_) => {
                for r in data.chunks(RECORD) {
                    if let Some((h, c)) = decode(r) {
                        known.insert(h, c);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: {e}; objects will be re-hashed", path.display()),
        }
        ObjectChecker {
            store: store.clone(),
            path,
            known: Mutex::new(known),
        }
    }

    /// Open object `hash` read-only if it is whole: present, `size` bytes long,
    /// and (unless verified since its ctime last changed) hashing to its name.
    /// Errors: [`Error::MissingObject`], [`Error::ObjectSize`],
    /// [`Error::CorruptObject`], or the I/O error that prevented the check.
    pub fn open_checked(&self, hash: &Hash, size: u64) -> Result<File> {
        let path = self.store.object_path(hash);
        let f = objects::open(&self.store, hash)?;
        let m = f.metadata().at(&path)?;
        if m.len() != size {
            return Err(Error::ObjectSize {
                hash: *hash,
                expected: size,
                found: m.len(),
            });
        }
        let ctime = (m.ctime(), m.ctime_nsec() as u32);
        let verified = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            == Some(&ctime);
        if verified {
            return Ok(f);
        }
        let actual = Hash::from(fsutil::hash_mapped(&f).at(&path)?);
        // The object must not have changed while it was hashed.
        let after = f.metadata().at(&path)?;
        if actual != *hash || (after.ctime(), after.ctime_nsec() as u32) != ctime {
            return Err(Error::CorruptObject(*hash));
        }
        self.record(hash, ctime);
        Ok(f)
    }

    fn record(&self, hash: &Hash, ctime: Ctime) {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*hash, ctime);
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&encode(hash, ctime)));
        if let Err(e) = appended {
            // Only costs a re-hash after a restart.
            log::debug!("{}: {e}", self.path.display());
        }
    }
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
