//! Persistence of a container's changes: a snapshot file plus an append-only
//! journal of records, both in `private/<CT>/`.
//!
//! Framing of each record: `len u32 LE`, `check u32 LE` (first 4 bytes of the
//! blake3 of the body), body (postcard [`Rec`]). Replay stops at the first torn or
//! damaged record (the tail of a crash) and the file is cut there.
//!
//! Every change is appended with one `write` as it happens, so a killed daemon
//! loses nothing the kernel accepted; `sync` (on fsync/fsyncdir) makes it durable
//! against power loss. Compaction writes a new snapshot beside the old one, fsyncs
//! it, renames it over `state`, then empties the journal.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::inode::{Ino, InodeAttrs};
use crate::store::error::{IoContext, Result};
use crate::store::fsutil::{self, failpoint_io};

/// One change to a container tree. The variant order is part of the format.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Record {
    /// Set (or create) an inode's attributes.
    Inode(Ino, InodeAttrs),
    /// Replace a directory's entries wholesale (snapshots).
    Children(Ino, BTreeMap<Vec<u8>, Ino>),
    /// Add or replace one directory entry.
    Add(Ino, Vec<u8>, Ino),
    /// Remove one directory entry.
    Remove(Ino, Vec<u8>),
    /// The inode is gone.
    Drop(Ino),
    /// Next inode number to hand out.
    NextIno(Ino),
}

/// The open journal of a mounted container.
pub struct Journal {
    file: File,
    path: PathBuf,
    state: PathBuf,
    len: u64,
}

fn frame(rec: &Record) -> Vec<u8> {
    let body = postcard::to_stdvec(rec).expect("encoding to a Vec cannot fail");
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&blake3::hash(&body).as_bytes()[..4]);
    out.extend_from_slice(&body);
    out
}

/// Decode framed records; returns them and the length of the valid prefix.
fn parse(data: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= 8 {
        let len =
            u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let Some(body) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if blake3::hash(body).as_bytes()[..4] != data[pos + 4..pos + 8] {
            break;
        }
        match postcard::from_bytes(body) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    (out, pos)
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v).at(path)?;
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).at(path),
    }
}

/// Write `snapshot` as the `state` of a new private area `dir`, with an empty
/// journal, without syncing: the caller makes the whole area durable at once
/// (`container::pending`).
pub(crate) fn write_state(dir: &Path, snapshot: &[Record]) -> Result<()> {
    let mut buf = Vec::new();
    for r in snapshot {
        buf.extend_from_slice(&frame(r));
    }
    let state = dir.join("state");
    fs::write(&state, &buf).at(&state)?;
    let journal = dir.join("journal");
    File::create(&journal).at(&journal)?;
    Ok(())
}

/// The records of a container's snapshot and journal, read without changing
/// anything (safe while its daemon appends; a torn tail is ignored).
pub fn read_records(dir: &Path) -> Result<Vec<Record>> {
    let (mut recs, _) = parse(&read_all(&dir.join("state"))?);
    recs.extend(parse(&read_all(&dir.join("journal"))?).0);
    Ok(recs)
}

impl Journal {
    /// Open the journal in `dir`, returning it with the snapshot's records followed
    /// by the journal's (valid prefix only; a torn tail is cut off).
    pub fn open(dir: &Path) -> Result<(Journal, Vec<Record>)> {
        let state = dir.join("state");
        let path = dir.join("journal");
        let (mut recs, _) = parse(&read_all(&state)?);
        let data = read_all(&path)?;
        let (jrecs, valid) = parse(&data);
        recs.extend(jrecs);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        if valid < data.len() {
            file.set_len(valid as u64).at(&path)?;
        }
        let j = Journal {
            file,
            path,
            state,
            len: valid as u64,
        };
        Ok((j, recs))
    }

    /// Append records with one write at the end of the valid records. On failure
    /// nothing is appended: a partly written tail is cut again (and the next
    /// append overwrites it anyway), so the caller may treat the change as never
    /// made.
    pub fn append(&mut self, recs: &[Record]) -> Result<()> {
        let mut buf = Vec::new();
        for r in recs {
            buf.extend_from_slice(&frame(r));
        }
        let written =
            failpoint_io("journal-append").and_then(|()| self.file.write_all_at(&buf, self.len));
        if let Err(e) = written {
            let _ = self.file.set_len(self.len);
            return Err(e).at(&self.path);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Bytes in the journal since the last compaction.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was appended since the last compaction.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Make every appended record durable.
    pub fn sync(&self) -> Result<()> {
        failpoint_io("journal-sync")
            .and_then(|()| self.file.sync_data())
            .at(&self.path)
    }

    /// Replace snapshot and journal by `snapshot` (the full set of changes). If
    /// anything fails, the previous snapshot and journal stay as they were (and
    /// loadable); the half-written new snapshot is removed.
    pub fn compact(&mut self, snapshot: &[Record]) -> Result<()> {
        let tmp = self.state.with_extension("new");
        let mut buf = Vec::new();
        for r in snapshot {
            buf.extend_from_slice(&frame(r));
        }
        let written = failpoint_io("snapshot-write").and_then(|()| {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e).at(&tmp);
        }
        fs::rename(&tmp, &self.state).at(&self.state)?;
        if let Some(dir) = self.state.parent() {
            fsutil::sync_dir(dir).at(dir)?;
        }
        self.file.set_len(0).at(&self.path)?;
        self.len = 0;
        self.file.sync_all().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Fuzz-style: parsing arbitrary bytes never panics and never claims more
        /// valid bytes than there are.
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..4096)) {
            let (_, valid) = parse(&data);
            proptest::prop_assert!(valid <= data.len());
        }
    }

    #[test]
    fn torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let (mut j, recs) = Journal::open(d.path()).unwrap();
        assert!(recs.is_empty());
        j.append(&[Record::NextIno(7), Record::Remove(1, b"x".to_vec())])
            .unwrap();
        drop(j);
        // Simulate a torn write: half a record at the end.
        let mut f = OpenOptions::new()
            .append(true)
            .open(d.path().join("journal"))
            .unwrap();
        f.write_all(&frame(&Record::NextIno(9))[..5]).unwrap();
        drop(f);
        let (mut j, recs) = Journal::open(d.path()).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(matches!(recs[0], Record::NextIno(7)));
        j.append(&[Record::NextIno(10)]).unwrap();
        drop(j);
        let (mut j, recs) = Journal::open(d.path()).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(matches!(recs[2], Record::NextIno(10)));
        j.compact(&[Record::NextIno(11)]).unwrap();
        drop(j);
        let (_, recs) = Journal::open(d.path()).unwrap();
        assert_eq!(recs.len(), 1);
    }
}
