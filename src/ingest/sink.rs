//! The object side of an ingest: every source hands file content here. The sink
//! hashes it, pins the hash in the write session *before* checking whether the
//! store has it (so a concurrent gc keeps it), and stages the content only when
//! the store lacks it. Each distinct content is staged once per ingest, even
//! when two files with it are processed at the same time.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes read from a stream at a time.
const STREAM_BUF: usize = 1 << 20;

/// Feed `n` zero bytes (a hole) to `hasher`.
fn hash_zeros(hasher: &mut blake3::Hasher, mut n: u64) {
    static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil::{self, failpoint_io};
use crate::store::hash::Hash;
use crate::store::session::Session;

/// Receives progress while an ingest runs. Implemented by the CLI's progress bar.
pub trait Progress: Sync {
    /// Total bytes of regular-file content to process, once known.
    fn start(&self, _total_bytes: u64, _files: u64) {}
    /// A stream of unknown size starts (an archive): show bytes and rate.
    fn start_stream(&self) {}
    /// `bytes` more of file content processed.
    fn advance(&self, _bytes: u64) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What the sink did, for the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkCounts {
    pub new_objects: u64,
    pub new_bytes: u64,
    pub dedup_bytes: u64,
    pub cache_hits: u64,
}

/// Hashes, pins and stages file content for one ingest. Shared by the source's
/// worker threads.
pub struct ObjectSink<'a> {
    session: &'a Session,
    progress: &'a dyn Progress,
    new_objects: AtomicU64,
    new_bytes: AtomicU64,
    dedup_bytes: AtomicU64,
    cache_hits: AtomicU64,
}

impl<'a> ObjectSink<'a> {
    pub(crate) fn new(session: &'a Session, progress: &'a dyn Progress) -> ObjectSink<'a> {
        ObjectSink {
            session,
            progress,
            new_objects: AtomicU64::new(0),
            new_bytes: AtomicU64::new(0),
            dedup_bytes: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// The ingest's progress display.
    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    /// Totals so far.
    pub fn counts(&self) -> SinkCounts {
        SinkCounts {
            new_objects: self.new_objects.load(Ordering::Relaxed),
            new_bytes: self.new_bytes.load(Ordering::Relaxed),
            dedup_bytes: self.dedup_bytes.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// A source already knows the hash of `size` bytes (a stat cache): pin it and
    /// report whether the store holds the object whole. `false` means the source
    /// must hand the content over after all.
    pub fn known(&self, hash: &Hash, size: u64) -> Result<bool> {
        if self.session.pin_and_check(hash, size)? {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.dedup_bytes.fetch_add(size, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }

    /// Store content held in memory; returns its hash.
    pub fn store_bytes(&self, data: &[u8]) -> Result<Hash> {
        let hash = Hash::of(data);
        if self.is_stored_or_claimed(&hash, data.len() as u64)? {
            return Ok(hash);
        }
        let (staged, mut out) = self.session.stage_file()?;
        failpoint_io("ingest-stage")
            .and_then(|()| out.write_all(data))
            .at(&staged)?;
        fsutil::start_writeback(&out);
        self.session.staged(staged, hash);
        self.count_new(data.len() as u64);
        Ok(hash)
    }

    /// Store the content of an open file of `size` bytes whose data lies in
    /// `segments` (holes between them read as zeros), copying only when new.
    /// `hash` is its hash, computed by the caller from the same file; the copy
    /// is hashed again, and a mismatch means the file changed while it was
    /// read ([`Error::Changed`] naming `path`).
    pub fn store_file(
        &self,
        path: &Path,
        file: &File,
        segments: &[(u64, u64)],
        size: u64,
        hash: Hash,
    ) -> Result<Hash> {
        if self.is_stored_or_claimed(&hash, size)? {
            return Ok(hash);
        }
        let (staged, out) = self.session.stage_file()?;
        failpoint_io("ingest-stage")
            .and_then(|()| fsutil::copy_segments(file, &out, segments, size))
            .at(&staged)?;
        let copied = Hash::from(fsutil::hash_mapped(&out).at(&staged)?);
        if copied != hash {
            return Err(Error::Changed {
                path: path.to_path_buf(),
                what: "content changed while copying",
            });
        }
        fsutil::start_writeback(&out);
        self.session.staged(staged, hash);
        self.count_new(size);
        Ok(hash)
    }

    /// Store content read from a stream (an archive member): `size` logical
    /// bytes whose data lies in `segments`, in order, the rest holes. `read`
    /// yields the segments' bytes back to back. The content is written to a
    /// staged file while it is hashed, and dropped when the store has it.
    pub fn store_stream(
        &self,
        size: u64,
        segments: &[(u64, u64)],
        read: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> Result<Hash> {
        let (staged, out) = self.session.stage_file()?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; STREAM_BUF];
        let mut pos = 0u64;
        for &(off, len) in segments {
            hash_zeros(&mut hasher, off - pos);
            let mut left = len;
            while left > 0 {
                let want = left.min(buf.len() as u64) as usize;
                let n = read(&mut buf[..want])?;
                if n == 0 {
                    return Err(Error::Changed {
                        path: staged,
                        what: "the stream ended before the member's data did",
                    });
                }
                failpoint_io("ingest-stage")
                    .and_then(|()| out.write_all_at(&buf[..n], off + len - left))
                    .at(&staged)?;
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            pos = off + len;
        }
        hash_zeros(&mut hasher, size - pos);
        out.set_len(size).at(&staged)?;
        let hash = Hash::from(hasher.finalize());
        if self.is_stored_or_claimed(&hash, size)? {
            drop(out);
            std::fs::remove_file(&staged).at(&staged)?;
            return Ok(hash);
        }
        fsutil::start_writeback(&out);
        self.session.staged(staged, hash);
        self.count_new(size);
        Ok(hash)
    }

    /// `--consume`: move the source file at `path` (one link, hashing to
    /// `hash`) into the session instead of copying it. Its owner, mode and
    /// xattrs become an object's, and the moved bytes are hashed again (a
    /// mismatch moves the file back and fails). Returns false, moving
    /// nothing, when the file is on another file system or another open
    /// file refers to it (it could be written later); true when the store
    /// has it (moved, or already present: then the file stays).
    pub fn store_moved(&self, path: &Path, file: &File, size: u64, hash: Hash) -> Result<bool> {
        if self.session.pin_and_check(&hash, size)? {
            self.dedup_bytes.fetch_add(size, Ordering::Relaxed);
            return Ok(true);
        }
        // Only a file nobody else has open is moved: afterwards only the
        // store can reach it. Otherwise (or across file systems) it is copied.
        if !crate::store::sys::try_write_lease(file) {
            return Ok(false);
        }
        let staged = self.session.stage_path();
        let renamed = std::fs::rename(path, &staged);
        crate::store::sys::release_lease(file);
        match renamed {
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(false),
            r => r.at(path)?,
        }
        let moved = (|| -> std::io::Result<Hash> {
            rustix::fs::fchown(
                file,
                Some(rustix::fs::Uid::ROOT),
                Some(rustix::fs::Gid::ROOT),
            )?;
            rustix::fs::fchmod(file, rustix::fs::Mode::from_raw_mode(Session::OBJECT_MODE))?;
            fsutil::clear_xattrs(file)?;
            // Read, not mapped: the file came from outside the store.
            Ok(Hash::from(fsutil::hash_read(file)?))
        })();
        match moved {
            Ok(h) if h == hash => {}
            other => {
                let _ = std::fs::rename(&staged, path);
                return Err(match other {
                    Err(e) => Error::Io {
                        path: path.to_path_buf(),
                        err: e,
                    },
                    Ok(_) => Error::Changed {
                        path: path.to_path_buf(),
                        what: "content changed while it was moved into the store",
                    },
                });
            }
        }
        if !self.session.claim(&hash) {
            // Another file of this ingest stages the same bytes: this one goes.
            std::fs::remove_file(&staged).at(&staged)?;
            self.dedup_bytes.fetch_add(size, Ordering::Relaxed);
            return Ok(true);
        }
        self.session.staged(staged, hash);
        self.count_new(size);
        Ok(true)
    }

    /// Pin `hash`; true when nothing needs staging: the store holds it whole, or
    /// another thread of this ingest is staging it.
    fn is_stored_or_claimed(&self, hash: &Hash, size: u64) -> Result<bool> {
        if self.session.pin_and_check(hash, size)? || !self.session.claim(hash) {
            self.dedup_bytes.fetch_add(size, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }

    fn count_new(&self, size: u64) {
        self.new_objects.fetch_add(1, Ordering::Relaxed);
        self.new_bytes.fetch_add(size, Ordering::Relaxed);
    }
}
