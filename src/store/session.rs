//! Write sessions: how new objects enter the store without ever being visible
//! half-written and without a concurrent `gc` deleting them before their manifest
//! is committed.
//!
//! A session owns `tmp/session-<pid>-<nanos>/`, holding:
//! - `pins`: every hash the session relies on, appended *before* the session checks
//!   whether the object exists. The file is flocked for the session's life, so `gc`
//!   can tell a live session (lock held: honour its pins) from a crashed one (lock
//!   free: its directory is garbage).
//! - staged object files, written and hashed there, then made durable with one
//!   `syncfs` and renamed into `objects/` by [`Session::publish`].
//!
//! Dropping a session removes its directory; a killed process leaves it behind for
//! `gc` to remove. Neither case leaves anything inconsistent.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::store::Store;
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;

/// Prefix of session directories under `tmp/`.
pub const SESSION_PREFIX: &str = "session-";

/// A live write session. See the module documentation.
pub struct Session {
    store: Store,
    dir: PathBuf,
    pins: Mutex<File>,
    counter: AtomicU64,
    staged: Mutex<Vec<(PathBuf, Hash)>>,
    /// Hashes this session has taken on to write.
    claimed: Mutex<std::collections::HashSet<Hash>>,
}

impl Session {
    /// Start a session in `store`.
    pub fn begin(store: &Store) -> Result<Session> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = store
            .tmp_dir()
            .join(format!("{SESSION_PREFIX}{}-{nanos}", std::process::id()));
        fsutil::create_private_dir(&dir).at(&dir)?;
        // Lock the pins file before it gets the name `gc` looks for, so `gc` never
        // sees it unlocked while this session lives.
        let new_path = dir.join("pins.new");
        let pins = OpenOptions::new()
            .create_new(true)
            .append(true)
            .read(true)
            .open(&new_path)
            .at(&new_path)?;
        fsutil::lock_exclusive(&pins, true).at(&new_path)?;
        let pins_path = dir.join("pins");
        fs::rename(&new_path, &pins_path).at(&pins_path)?;
        Ok(Session {
            store: store.clone(),
            dir,
            pins: Mutex::new(pins),
            counter: AtomicU64::new(0),
            staged: Mutex::new(Vec::new()),
            claimed: Mutex::new(Default::default()),
        })
    }

    /// Protect `hash` from `gc` until the session ends. Call before checking
    /// whether the object exists.
    pub fn pin(&self, hash: &Hash) -> Result<()> {
        let mut f = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&hash.0).at(self.dir.join("pins"))
    }

    /// Pin `hash`, then report whether its object is already in the store with
    /// `size` bytes. An object of another size is damaged (truncated): it counts
    /// as absent, so the ingest stages the content again and its publish
    /// replaces the damaged file.
    pub fn pin_and_check(&self, hash: &Hash, size: u64) -> Result<bool> {
        self.pin(hash)?;
        match std::fs::metadata(self.store.object_path(hash)) {
            Ok(m) if m.len() == size => Ok(true),
            Ok(m) => {
                log::warn!(
                    "object {hash} is damaged ({} bytes instead of {size}); it will be replaced",
                    m.len()
                );
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    /// Take on writing the object `hash`: true for the first caller of this
    /// session, false if another thread of the session already writes it (so each
    /// content is staged once even when two files with it are processed at once).
    /// Only call it for an object about to be staged: a claim is a promise.
    pub fn claim(&self, hash: &Hash) -> bool {
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*hash)
    }

    /// A fresh name in the session directory, for a file moved in.
    pub fn stage_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("obj-{n}"))
    }

    /// The mode of every object file (read-only for everyone who can reach
    /// the store; only root can).
    pub const OBJECT_MODE: u32 = 0o444;

    /// A new, empty staging file in the session directory, made with an
    /// object's final mode (0444; the returned descriptor still writes), so
    /// publishing needs no chmod per object.
    pub fn stage_file(&self) -> Result<(PathBuf, File)> {
        let path = self.stage_path();
        let f = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .mode(Self::OBJECT_MODE)
            .open(&path)
            .at(&path)?;
        Ok((path, f))
    }

    /// Record a staged file, already checked to hash to `hash`, for publishing.
    pub fn staged(&self, path: PathBuf, hash: Hash) {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path, hash));
    }

    /// Drop the staged objects whose hash `keep` rejects (content of archive
    /// members a later member replaced): they are never published. Returns
    /// how many, and their bytes.
    pub fn drop_staged(&self, keep: &dyn Fn(&Hash) -> bool) -> Result<(u64, u64)> {
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        let (mut n, mut bytes) = (0, 0);
        let mut kept = Vec::with_capacity(staged.len());
        for (path, hash) in staged.drain(..) {
            if keep(&hash) {
                kept.push((path, hash));
                continue;
            }
            bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).at(&path)?;
            n += 1;
        }
        *staged = kept;
        Ok((n, bytes))
    }

    /// Make every staged object durable and move it into `objects/`: one syncfs
    /// for the data, renames, one syncfs for the renames. After this returns, a
    /// manifest naming these objects may be committed.
    pub fn publish(&self) -> Result<usize> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|p| p.into_inner()));
        if staged.is_empty() {
            return Ok(0);
        }
        fsutil::failpoint_io("publish-sync")
            .and_then(|()| fsutil::sync_fs(&self.dir))
            .at(&self.dir)?;
        // In parallel: the renames land in 256 directories.
        staged.par_iter().try_for_each(|(path, hash)| {
            let dest = self.store.object_path(hash);
            // Another session may have published the same content meanwhile: the
            // rename then replaces identical bytes, atomically.
            fsutil::failpoint_io("publish-rename")
                .and_then(|()| fs::rename(path, &dest))
                .at(&dest)
        })?;
        fsutil::sync_fs(&self.dir).at(&self.dir)?;
        Ok(staged.len())
    }
}

impl Session {
    /// Publish staged objects over damaged ones (verify --repair): like
    /// [`Session::publish`], whose rename replaces whatever file holds the name.
    /// Returns the hashes published.
    pub fn publish_replacing(&self) -> Result<Vec<Hash>> {
        let hashes: Vec<Hash> = self
            .staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(_, h)| *h)
            .collect();
        self.publish()?;
        Ok(hashes)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            log::warn!(
                "could not remove session directory {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Pins of every live session, and the directories of dead ones.
pub struct SessionScan {
    pub pinned: std::collections::HashSet<Hash>,
    pub dead: Vec<PathBuf>,
}

/// Read all session directories under `tmp/`. A session whose pins file can be
/// locked is dead (its process is gone).
pub fn scan(store: &Store) -> Result<SessionScan> {
    let tmp = store.tmp_dir();
    let mut out = SessionScan {
        pinned: Default::default(),
        dead: Vec::new(),
    };
    for e in fs::read_dir(&tmp).at(&tmp)? {
        let e = e.at(&tmp)?;
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(SESSION_PREFIX) {
            continue;
        }
        let pins_path = e.path().join("pins");
        let f = match File::open(&pins_path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // Created but not yet locked, or being removed: treat as live
                // unless it is old (a crash between mkdir and lock).
                if is_old(&e.path()) {
                    out.dead.push(e.path());
                }
                continue;
            }
            Err(err) => return Err(err).at(&pins_path),
        };
        if fsutil::lock_exclusive(&f, false).at(&pins_path)? {
            out.dead.push(e.path());
            continue;
        }
        let data = fs::read(&pins_path).at(&pins_path)?;
        for c in data.chunks_exact(32) {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            out.pinned.insert(Hash(h));
        }
    }
    Ok(out)
}

fn is_old(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|d| d.as_secs() > 3600)
}
