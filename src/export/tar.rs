//! Writing an export tree as a pax tar stream: every entry in path order, the
//! root as `./`, hardlinks to the first name of their group, files with holes
//! as sparse members, xattrs, devices and nanosecond mtimes. Sockets have no
//! tar form and are left out (as GNU tar does).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::tree::ExportTree;
use crate::archive::read::{Member, MemberKind};
use crate::archive::write::TarWriter;
use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind};

/// Counts the bytes written through it.
struct Counted<W> {
    w: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.w.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Write `tree` as a tar stream to `out` (`label` names it in errors);
/// returns the bytes written.
pub fn write<W: Write>(store: &Store, tree: &ExportTree, out: W, label: &Path) -> Result<u64> {
    let mut w = TarWriter::new(Counted { w: out, n: 0 });
    let entries = &tree.manifest.entries;
    // Depth first: a directory's entries follow it without another
    // directory's in between (`a/x` before `a-b`), so extracting tools that
    // set a directory's times when they leave it set them last.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| {
        let parts = |i: usize| entries[i].path.split(|&c| c == b'/');
        parts(a).cmp(parts(b))
    });
    // The first name of each hardlink group in that order carries the data.
    let mut leaders = std::collections::HashMap::new();
    for &i in &order {
        if entries[i].kind == Kind::File && entries[i].link_group != 0 {
            leaders.entry(entries[i].link_group).or_insert(i);
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    for &i in &order {
        let e = &entries[i];
        if e.kind == Kind::Socket {
            continue;
        }
        let mut m = member_of(e);
        if e.kind == Kind::File && e.link_group != 0 && leaders[&e.link_group] != i {
            m.kind = MemberKind::Hardlink;
            m.link = entries[leaders[&e.link_group]].path.clone();
            w.begin(&m).at(label)?;
            w.end_member().at(label)?;
            continue;
        }
        if e.kind != Kind::File {
            w.begin(&m).at(label)?;
            w.end_member().at(label)?;
            continue;
        }
        let f = tree.open(store, i)?;
        let segments = fsutil::data_segments(&f, e.size).at(label)?;
        let stored: u64 = segments.iter().map(|s| s.1).sum();
        if stored < e.size {
            m.sparse = Some(segments.clone());
        }
        w.begin(&m).at(label)?;
        let verify = tree.private.get(i).is_none_or(Option::is_none);
        let hash = stream(&f, &segments, e.size, &mut w, &mut buf, label)?;
        if let (true, Some(want)) = (verify, e.hash)
            && hash != want
        {
            return Err(Error::CorruptObject(want));
        }
        w.end_member().map_err(|err| Error::Changed {
            path: String::from_utf8_lossy(&e.path).into_owned().into(),
            what: if err.kind() == std::io::ErrorKind::InvalidData {
                "its size changed while it was exported"
            } else {
                "it could not be written"
            },
        })?;
    }
    let counted = w.finish().at(label)?;
    Ok(counted.n)
}

/// Copy the segments of `f` into the member, hashing the whole logical
/// content (holes as zeros).
fn stream<W: Write>(
    f: &File,
    segments: &[(u64, u64)],
    size: u64,
    w: &mut TarWriter<W>,
    buf: &mut [u8],
    label: &Path,
) -> Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut pos = 0u64;
    let zeros = [0u8; 1 << 16];
    let hash_zeros = |h: &mut blake3::Hasher, mut n: u64| {
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            h.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    for &(off, len) in segments {
        hash_zeros(&mut hasher, off - pos);
        let mut done = 0;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = f.read_at(&mut buf[..want], off + done).at(label)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            w.data(&buf[..n]).at(label)?;
            done += n as u64;
        }
        pos = off + len;
    }
    hash_zeros(&mut hasher, size.saturating_sub(pos));
    Ok(Hash::from(hasher.finalize()))
}

/// The tar member of a manifest entry (root: `./`).
pub fn member_of(e: &Entry) -> Member {
    let kind = match e.kind {
        Kind::Dir => MemberKind::Dir,
        Kind::File | Kind::Socket => MemberKind::File,
        Kind::Symlink => MemberKind::Symlink,
        Kind::CharDev => MemberKind::CharDev,
        Kind::BlockDev => MemberKind::BlockDev,
        Kind::Fifo => MemberKind::Fifo,
    };
    Member {
        name: if e.path.is_empty() {
            b"./".to_vec()
        } else {
            e.path.clone()
        },
        kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime_sec: e.mtime_sec,
        mtime_nsec: e.mtime_nsec,
        size: if e.kind == Kind::File { e.size } else { 0 },
        link: e.target.clone(),
        dev_major: rustix::fs::major(e.rdev),
        dev_minor: rustix::fs::minor(e.rdev),
        xattrs: e.xattrs.clone(),
        sparse: None,
        offset: 0,
    }
}
