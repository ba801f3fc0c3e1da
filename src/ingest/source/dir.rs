//! A directory source: a tree on a local file system.
//!
//! A sequential scan (lstat of every path) builds the entry list and the
//! hardlink groups; then rayon processes entries in parallel (xattrs, symlink
//! targets, and for regular files: hash, and hand to the sink). Files whose
//! (dev, ino, size, mtime, ctime) match the stat cache of an earlier ingest are
//! not read again when the store still holds their object whole.
//!
//! A file that changes while it is read is detected by comparing its stat before
//! and after, by counting the bytes it yields against its size (a short read, as
//! a FUSE source or a concurrent truncate gives, is never padded), and by
//! re-hashing new objects from the staged copy, so a recorded hash always
//! matches the stored bytes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Source, SourceTree, StatUpdate};
use crate::ingest::sink::ObjectSink;
use crate::store::Store;
use crate::store::catalog::{Catalog, StatEntry};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil::{self, failpoint_io};
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind};

/// Files up to this size are read into memory once: hashed and, when new, written
/// from the same buffer.
const SMALL_FILE: u64 = 1 << 20;

/// A directory to ingest, with the stat cache of earlier ingests.
pub struct DirSource {
    root: PathBuf,
    root_meta: fs::Metadata,
    cache: HashMap<(u64, u64), StatEntry>,
    /// Move new files (single-link, same file system) into the store instead
    /// of copying them; the tree loses them.
    pub consume: bool,
}

impl DirSource {
    /// Open directory `root` as a source (reads the stat cache from the store).
    pub fn open(store: &Store, root: &Path) -> Result<DirSource> {
        let root_meta = fs::metadata(root).at(root)?;
        if !root_meta.is_dir() {
            return Err(Error::BadSource {
                path: root.to_path_buf(),
                reason: "not a directory (only directory sources are supported)".into(),
            });
        }
        let cache = Catalog::open_read_only(store)?.stat_cache()?;
        Ok(DirSource {
            root: root.to_path_buf(),
            root_meta,
            cache,
            consume: false,
        })
    }
}

impl Source for DirSource {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree> {
        let started = std::time::Instant::now();
        let mut warnings = Vec::new();
        let mut scanned = Vec::new();
        scan(
            &self.root,
            Vec::new(),
            self.root_meta.clone(),
            &mut scanned,
            &mut warnings,
        )?;
        assign_link_groups(&mut scanned);
        let (total, files) = scanned
            .iter()
            .filter(|s| s.kind == Kind::File && s.leader)
            .fold((0, 0), |(b, n), s| (b + s.meta.len(), n + 1));
        sink.progress().start(total, files);
        log::info!(
            "scan: {} entries in {:.3} s",
            scanned.len(),
            started.elapsed().as_secs_f64()
        );
        let cache = &self.cache;
        let consume = self.consume;
        let results: Vec<(Entry, Option<StatUpdate>)> = scanned
            .par_iter()
            .map(|s| {
                let r = build_entry(sink, s, cache, consume);
                if s.kind == Kind::File && s.leader {
                    sink.progress().advance(s.meta.len());
                }
                r
            })
            .collect::<Result<_>>()?;
        let mut tree = SourceTree {
            warnings,
            ..SourceTree::default()
        };
        for (e, st) in results {
            tree.entries.push(e);
            tree.stat_updates.extend(st);
        }
        Ok(tree)
    }
}

/// A path found by the scan, before its content is processed.
struct Scanned {
    rel: Vec<u8>,
    full: PathBuf,
    meta: fs::Metadata,
    kind: Kind,
    link_group: u32,
    /// First path of its hardlink group (the one whose content is processed).
    leader: bool,
}

/// Depth-first scan collecting every path with its lstat.
fn scan(
    full: &Path,
    rel: Vec<u8>,
    meta: fs::Metadata,
    out: &mut Vec<Scanned>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let kind = Kind::of_file_type(&meta.file_type());
    if kind == Kind::Socket {
        warnings.push(format!("{}: socket skipped", full.display()));
        return Ok(());
    }
    let is_dir = kind == Kind::Dir;
    out.push(Scanned {
        rel: rel.clone(),
        full: full.to_path_buf(),
        meta,
        kind,
        link_group: 0,
        leader: true,
    });
    if !is_dir {
        return Ok(());
    }
    let mut children: Vec<_> = fs::read_dir(full)
        .at(full)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .at(full)?;
    children.sort();
    for name in children {
        let child = full.join(&name);
        let meta = fs::symlink_metadata(&child).at(&child)?;
        let mut crel = rel.clone();
        if !crel.is_empty() {
            crel.push(b'/');
        }
        crel.extend_from_slice(name.as_bytes());
        scan(&child, crel, meta, out, warnings)?;
    }
    Ok(())
}

/// Give paths sharing an inode a common group; the first in path order leads.
fn assign_link_groups(scanned: &mut [Scanned]) {
    let mut groups: HashMap<(u64, u64), u32> = HashMap::new();
    let mut order: Vec<usize> = (0..scanned.len()).collect();
    order.sort_by(|&a, &b| scanned[a].rel.cmp(&scanned[b].rel));
    for i in order {
        let s = &mut scanned[i];
        if s.kind == Kind::Dir || s.meta.nlink() < 2 {
            continue;
        }
        let next = groups.len() as u32 + 1;
        match groups.entry((s.meta.dev(), s.meta.ino())) {
            std::collections::hash_map::Entry::Occupied(g) => {
                s.link_group = *g.get();
                s.leader = false;
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(next);
                s.link_group = next;
            }
        }
    }
    // A group with a single member inside the tree is not a hardlink here.
    let mut sizes: HashMap<u32, u32> = HashMap::new();
    for s in scanned.iter().filter(|s| s.link_group != 0) {
        *sizes.entry(s.link_group).or_default() += 1;
    }
    for s in scanned.iter_mut() {
        if s.link_group != 0 && sizes[&s.link_group] < 2 {
            s.link_group = 0;
        }
    }
    // Renumber densely so manifests do not depend on scan details.
    let mut renum: HashMap<u32, u32> = HashMap::new();
    for s in scanned.iter_mut().filter(|s| s.link_group != 0) {
        let n = renum.len() as u32 + 1;
        s.link_group = *renum.entry(s.link_group).or_insert(n);
    }
}

fn build_entry(
    sink: &ObjectSink<'_>,
    s: &Scanned,
    cache: &HashMap<(u64, u64), StatEntry>,
    consume: bool,
) -> Result<(Entry, Option<StatUpdate>)> {
    let m = &s.meta;
    let xattrs = fsutil::read_xattrs(&s.full).at(&s.full)?;
    let mut e = Entry {
        path: s.rel.clone(),
        kind: s.kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime_sec: m.mtime(),
        mtime_nsec: m.mtime_nsec() as u32,
        size: 0,
        hash: None,
        target: Vec::new(),
        rdev: 0,
        xattrs,
        link_group: s.link_group,
    };
    let mut stat = None;
    match s.kind {
        Kind::Dir | Kind::Fifo | Kind::Socket => {}
        Kind::CharDev | Kind::BlockDev => e.rdev = m.rdev(),
        Kind::Symlink => {
            e.target = fs::read_link(&s.full)
                .at(&s.full)?
                .as_os_str()
                .as_bytes()
                .to_vec();
            e.size = e.target.len() as u64;
        }
        Kind::File => {
            e.size = m.len();
            if s.leader {
                let (hash, st) = store_file(sink, s, cache, consume)?;
                e.hash = Some(hash);
                stat = st;
            }
        }
    }
    Ok((e, stat))
}

fn same_content_stat(a: &fs::Metadata, b: &fs::Metadata) -> Option<&'static str> {
    if a.ino() != b.ino() || a.dev() != b.dev() {
        Some("replaced by another file")
    } else if a.len() != b.len() {
        Some("size changed")
    } else if (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()) {
        Some("modification time changed")
    } else {
        None
    }
}

/// Hash one regular file and hand it to the sink. Returns its hash and, when
/// the file was actually read, the stat-cache entry that lets the next ingest
/// skip it.
fn store_file(
    sink: &ObjectSink<'_>,
    s: &Scanned,
    cache: &HashMap<(u64, u64), StatEntry>,
    consume: bool,
) -> Result<(Hash, Option<StatUpdate>)> {
    let m = &s.meta;
    let key = (m.dev(), m.ino());
    let unchanged = |c: &&StatEntry| {
        c.size == m.len()
            && c.mtime == (m.mtime(), m.mtime_nsec())
            && c.ctime == (m.ctime(), m.ctime_nsec())
    };
    if let Some(c) = cache.get(&key).filter(unchanged)
        && sink.known(&c.hash, c.size)?
    {
        return Ok((c.hash, None));
    }
    let path = &s.full;
    let file = open_source(path)?;
    let before = file.metadata().at(path)?;
    if let Some(what) = same_content_stat(m, &before) {
        return Err(Error::Changed {
            path: path.clone(),
            what,
        });
    }
    let size = before.len();
    let segments = fsutil::data_segments(&file, size).at(path)?;
    let dense = segments.len() == 1 && segments[0] == (0, size) || size == 0;
    let short = || Error::Changed {
        path: path.clone(),
        what: "it returned fewer bytes than its size",
    };
    let hash = if consume && before.nlink() == 1 {
        let h = match fsutil::hash_segments(&file, &segments, size) {
            Ok(h) => Hash::from(h),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(short()),
            Err(e) => return Err(e).at(path),
        };
        check_unchanged(path, &before, &file.metadata().at(path)?)?;
        match sink.store_moved(path, &file, size, h)? {
            true => return Ok((h, None)),
            // Another file system: copied after all.
            false => sink.store_file(path, &file, &segments, size, h)?,
        }
    } else if dense && size <= SMALL_FILE {
        let buf = read_whole(&file, size).at(path)?.ok_or_else(short)?;
        let after = file.metadata().at(path)?;
        check_unchanged(path, &before, &after)?;
        sink.store_bytes(&buf)?
    } else {
        let h = match fsutil::hash_segments(&file, &segments, size) {
            Ok(h) => Hash::from(h),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(short()),
            Err(e) => return Err(e).at(path),
        };
        check_unchanged(path, &before, &file.metadata().at(path)?)?;
        let h = sink.store_file(path, &file, &segments, size, h)?;
        check_unchanged(path, &before, &file.metadata().at(path)?)?;
        h
    };
    let st = StatEntry {
        size,
        mtime: (before.mtime(), before.mtime_nsec()),
        ctime: (before.ctime(), before.ctime_nsec()),
        hash,
    };
    Ok((hash, Some((key, st))))
}

/// Read a whole file of `size` bytes from offset 0 (pread: the segment probe
/// moved the file offset). `None` when it yields fewer bytes, or more: its
/// content is not what its size says, so it must not be recorded.
fn read_whole(file: &File, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; size as usize];
    let mut got = 0;
    while got < buf.len() {
        failpoint_io("ingest-read")?;
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if got > 0 && fail_short_read() {
            return Ok(None);
        }
    }
    let mut probe = [0u8; 1];
    if file.read_at(&mut probe, size)? != 0 {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Test builds: `FAILPOINTS=ingest-short-read=return` makes every read look
/// short, as a FUSE source that reports more than it returns.
fn fail_short_read() -> bool {
    failpoint_io("ingest-short-read").is_err()
}

fn check_unchanged(path: &Path, before: &fs::Metadata, after: &fs::Metadata) -> Result<()> {
    if let Some(what) = same_content_stat(before, after) {
        return Err(Error::Changed {
            path: path.to_path_buf(),
            what,
        });
    }
    if (before.ctime(), before.ctime_nsec()) != (after.ctime(), after.ctime_nsec()) {
        return Err(Error::Changed {
            path: path.to_path_buf(),
            what: "change time moved",
        });
    }
    Ok(())
}

/// Open a source file for reading without following symlinks and, where allowed,
/// without updating its access time.
fn open_source(path: &Path) -> Result<File> {
    let open = |flags| {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | flags)
            .open(path)
    };
    match open(libc::O_NOATIME) {
        Ok(f) => Ok(f),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open(0).at(path),
        Err(e) => Err(e).at(path),
    }
}
