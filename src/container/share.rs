//! Dedup of a mounted FUSE container, done by its daemon: the daemon is the
//! only writer of a mounted container's state, so `vzstore dedup` hands it a
//! request and the daemon applies it between FUSE requests.
//!
//! `private/<CT>/share.req` (written whole, then renamed into place) lists
//! private inodes whose bytes are an object: `ino hash size mtime_ns
//! ctime_ns`, the stamp of the data file when it was hashed. The daemon
//! checks for it every [`POLL`]; for each inode still private, not open, and
//! whose data file still has that stamp, it journals the inode as shared
//! (synced), then removes the data file; then it writes `share.done`
//! (`applied N of M`) and removes the request. The objects were published and
//! referenced by the container's catalog entry before the request was made,
//! so a crash anywhere leaves the container consistent.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::container::inode::Ino;
use crate::store::Result;
use crate::store::error::IoContext;
use crate::store::hash::Hash;

/// How often a daemon looks for a request.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// What identifies the bytes of a data file that was hashed: any write or
/// truncate moves its mtime or ctime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// One inode to share again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShareRequest {
    pub ino: Ino,
    pub hash: Hash,
    pub stamp: Stamp,
}

fn req_path(private: &Path) -> PathBuf {
    private.join("share.req")
}

fn done_path(private: &Path) -> PathBuf {
    private.join("share.done")
}

/// Hand `reqs` to the daemon of the container whose area is `private`, and
/// wait (up to `timeout`) for its answer: how many it applied.
pub(crate) fn request(
    private: &Path,
    reqs: &[ShareRequest],
    timeout: Duration,
) -> Result<Option<u64>> {
    let done = done_path(private);
    let _ = fs::remove_file(&done);
    let mut text = String::new();
    for r in reqs {
        text.push_str(&format!(
            "{} {} {} {} {}\n",
            r.ino,
            r.hash.to_hex(),
            r.stamp.size,
            r.stamp.mtime_ns,
            r.stamp.ctime_ns
        ));
    }
    let tmp = private.join("share.req.new");
    fs::write(&tmp, text).at(&tmp)?;
    let req = req_path(private);
    fs::rename(&tmp, &req).at(&req)?;
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if let Ok(s) = fs::read_to_string(&done)
            && let Some(n) = s.split_whitespace().nth(1).and_then(|n| n.parse().ok())
        {
            let _ = fs::remove_file(&done);
            return Ok(Some(n));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Not taken (the daemon went away): withdraw it if it is still there.
    let _ = fs::remove_file(&req);
    Ok(None)
}

/// The pending request of a container, if any (read by its daemon).
pub(crate) fn take(private: &Path) -> Option<Vec<ShareRequest>> {
    let text = fs::read_to_string(req_path(private)).ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [ino, hash, size, m, c] = f[..]
            && let (Ok(ino), Some(hash), Ok(size), Ok(mtime_ns), Ok(ctime_ns)) = (
                ino.parse(),
                Hash::from_hex(hash),
                size.parse(),
                m.parse(),
                c.parse(),
            )
        {
            out.push(ShareRequest {
                ino,
                hash,
                stamp: Stamp {
                    size,
                    mtime_ns,
                    ctime_ns,
                },
            });
        }
    }
    Some(out)
}

/// Answer a request: `applied` of `asked`, then remove it.
pub(crate) fn answer(private: &Path, applied: u64, asked: u64) {
    let done = done_path(private);
    if let Err(e) = fs::write(&done, format!("applied {applied} of {asked}\n")) {
        log::warn!("{}: {e}", done.display());
    }
    let _ = fs::remove_file(req_path(private));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_written() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = ShareRequest {
            ino: 42,
            hash: Hash::of(b"x"),
            stamp: Stamp {
                size: 7,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: -5,
            },
        };
        // Nobody answers: the request is withdrawn after the timeout.
        assert_eq!(
            request(d.path(), std::slice::from_ref(&r), Duration::ZERO).expect("request"),
            None
        );
        fs::write(
            req_path(d.path()),
            format!("{} {} 7 1700000000123456789 -5\n", r.ino, r.hash.to_hex()),
        )
        .expect("write");
        assert_eq!(take(d.path()), Some(vec![r]));
        answer(d.path(), 1, 1);
        assert!(take(d.path()).is_none());
    }

    proptest::proptest! {
        /// Whatever a request file holds, reading it never panics and yields
        /// at most one request per line.
        #[test]
        fn any_request_file_parses_without_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let d = tempfile::tempdir().expect("tempdir");
            fs::write(req_path(d.path()), &data).expect("write");
            if let Some(reqs) = take(d.path()) {
                proptest::prop_assert!(reqs.len() <= data.iter().filter(|&&b| b == b'\n').count() + 1);
            }
        }
    }
}
