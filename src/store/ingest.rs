//! Ingest: turn a directory tree into objects plus a manifest, and commit it as a
//! new template version.
//!
//! Pipeline: a sequential scan (lstat of every path) builds the entry list and the
//! hardlink groups; then rayon processes entries in parallel (xattrs, symlink
//! targets, and for regular files: hash, pin, and copy only when the content is new);
//! then the session publishes new objects durably, and only then is the manifest
//! committed in one database batch (objects before manifests, invariant 2).
//!
//! A file that changes while it is read is detected by comparing its stat before
//! and after, and new objects are re-hashed from the staged copy before they are
//! published, so a recorded hash always matches the stored bytes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest};
use crate::store::meta::{MetaDb, StatEntry, TemplateRecord};
use crate::store::name;
use crate::store::session::Session;

/// Files up to this size are read into memory once: hashed and, when new, written
/// from the same buffer.
const SMALL_FILE: u64 = 1 << 20;

/// Receives progress while an ingest runs. Implemented by the CLI's progress bar.
pub trait Progress: Sync {
    /// Total bytes of regular-file content to process, once known.
    fn start(&self, _total_bytes: u64, _files: u64) {}
    /// `bytes` more of file content processed.
    fn advance(&self, _bytes: u64) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// What an ingest did.
#[derive(Clone, Debug)]
pub struct IngestSummary {
    pub record: TemplateRecord,
    /// Entries of every kind.
    pub entries: u64,
    /// Regular files (hardlinked names counted once).
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Objects this ingest added to the store.
    pub new_objects: u64,
    /// Logical bytes of the new objects.
    pub new_bytes: u64,
    /// Logical bytes whose content was already stored.
    pub dedup_bytes: u64,
    /// Files whose hash came from the stat cache (not re-read).
    pub cache_hits: u64,
    pub seconds: f64,
    /// Things skipped, such as sockets.
    pub warnings: Vec<String>,
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

/// A stat-cache entry to record, keyed by `(dev, ino)`.
type StatUpdate = ((u64, u64), StatEntry);

#[derive(Default)]
struct Counters {
    new_objects: AtomicU64,
    new_bytes: AtomicU64,
    dedup_bytes: AtomicU64,
    cache_hits: AtomicU64,
}

/// Ingest directory `src` as a new version of template `name`.
pub fn ingest(
    store: &Store,
    src: &Path,
    name: &str,
    progress: &dyn Progress,
) -> Result<IngestSummary> {
    name::validate(name)?;
    let started = Instant::now();
    let root_meta = fs::metadata(src).at(src)?;
    if !root_meta.is_dir() {
        return Err(Error::BadSource {
            path: src.to_path_buf(),
            reason: "not a directory (only directory sources are supported)".into(),
        });
    }
    let cache = MetaDb::open(store)?.stat_cache()?;
    let session = Session::begin(store)?;

    let mut warnings = Vec::new();
    let mut scanned = Vec::new();
    scan(src, Vec::new(), root_meta, &mut scanned, &mut warnings)?;
    assign_link_groups(&mut scanned);
    let (total, files) = scanned
        .iter()
        .filter(|s| s.kind == Kind::File && s.leader)
        .fold((0, 0), |(b, n), s| (b + s.meta.len(), n + 1));
    progress.start(total, files);
    log::info!(
        "scan: {} entries in {:.3} s",
        scanned.len(),
        started.elapsed().as_secs_f64()
    );

    let counters = Counters::default();
    let results: Vec<(Entry, Option<StatUpdate>)> = scanned
        .par_iter()
        .map(|s| {
            let r = build_entry(&session, s, &cache, &counters);
            if s.kind == Kind::File && s.leader {
                progress.advance(s.meta.len());
            }
            r
        })
        .collect::<Result<_>>()?;

    let mut stat_updates = Vec::new();
    let mut manifest = Manifest::default();
    for (e, st) in results {
        manifest.entries.push(e);
        stat_updates.extend(st);
    }
    manifest.sort();
    fill_hardlink_hashes(&mut manifest);

    log::info!("hash and stage: {:.3} s", started.elapsed().as_secs_f64());
    session.publish()?;
    log::info!("publish: {:.3} s", started.elapsed().as_secs_f64());
    let source = src.display().to_string();
    let record = MetaDb::open(store)?.commit_template(name, &source, &manifest, &stat_updates)?;
    log::info!("commit: {:.3} s", started.elapsed().as_secs_f64());
    drop(session);

    Ok(IngestSummary {
        entries: manifest.entries.len() as u64,
        files,
        bytes: total,
        new_objects: counters.new_objects.into_inner(),
        new_bytes: counters.new_bytes.into_inner(),
        dedup_bytes: counters.dedup_bytes.into_inner(),
        cache_hits: counters.cache_hits.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
        warnings,
        record,
    })
}

fn kind_of(ft: &fs::FileType) -> Option<Kind> {
    Some(if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else if ft.is_fifo() {
        Kind::Fifo
    } else {
        return None; // socket
    })
}

/// Depth-first scan collecting every path with its lstat.
fn scan(
    full: &Path,
    rel: Vec<u8>,
    meta: fs::Metadata,
    out: &mut Vec<Scanned>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let Some(kind) = kind_of(&meta.file_type()) else {
        warnings.push(format!("{}: socket skipped", full.display()));
        return Ok(());
    };
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

/// Members of a hardlink group take the content hash of their leader.
fn fill_hardlink_hashes(m: &mut Manifest) {
    let mut hashes: HashMap<u32, Hash> = HashMap::new();
    for e in &m.entries {
        if let Some(h) = e.hash.filter(|_| e.link_group != 0) {
            hashes.entry(e.link_group).or_insert(h);
        }
    }
    for e in &mut m.entries {
        if e.link_group != 0 && e.kind == Kind::File && e.hash.is_none() {
            e.hash = hashes.get(&e.link_group).copied();
        }
    }
}

fn build_entry(
    session: &Session,
    s: &Scanned,
    cache: &HashMap<(u64, u64), StatEntry>,
    counters: &Counters,
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
                let (hash, st) = store_file(session, s, cache, counters)?;
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

/// Hash one regular file and store its content if new. Returns its hash and, when
/// the file was actually read, the stat-cache entry that lets the next ingest skip it.
fn store_file(
    session: &Session,
    s: &Scanned,
    cache: &HashMap<(u64, u64), StatEntry>,
    counters: &Counters,
) -> Result<(Hash, Option<StatUpdate>)> {
    let m = &s.meta;
    let key = (m.dev(), m.ino());
    let unchanged = |c: &&StatEntry| {
        c.size == m.len()
            && c.mtime == (m.mtime(), m.mtime_nsec())
            && c.ctime == (m.ctime(), m.ctime_nsec())
    };
    if let Some(c) = cache.get(&key).filter(unchanged)
        && session.pin_and_check(&c.hash)?
    {
        counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        counters.dedup_bytes.fetch_add(m.len(), Ordering::Relaxed);
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

    let (hash, buf) = if dense && size <= SMALL_FILE {
        // pread: the segment probe above moved the file offset.
        let mut buf = vec![0u8; size as usize];
        match file.read_exact_at(&mut buf, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Error::Changed {
                    path: path.clone(),
                    what: "size changed while reading",
                });
            }
            Err(e) => return Err(e).at(path),
        }
        (Hash::of(&buf), Some(buf))
    } else {
        let h = fsutil::hash_segments(&file, &segments, size).at(path)?;
        (Hash::from(h), None)
    };
    let after = file.metadata().at(path)?;
    check_unchanged(path, &before, &after)?;

    if session.pin_and_check(&hash)? || !session.claim(&hash) {
        counters.dedup_bytes.fetch_add(size, Ordering::Relaxed);
    } else {
        let (staged, mut out) = session.stage_file()?;
        match buf {
            Some(buf) => out.write_all(&buf).at(&staged)?,
            None => {
                fsutil::copy_segments(&file, &out, &segments, size).at(&staged)?;
                let copied = Hash::from(fsutil::hash_mapped(&out).at(&staged)?);
                if copied != hash {
                    return Err(Error::Changed {
                        path: path.clone(),
                        what: "content changed while copying",
                    });
                }
                check_unchanged(path, &before, &file.metadata().at(path)?)?;
            }
        }
        fsutil::start_writeback(&out);
        session.staged(staged, hash);
        counters.new_objects.fetch_add(1, Ordering::Relaxed);
        counters.new_bytes.fetch_add(size, Ordering::Relaxed);
    }
    let st = StatEntry {
        size,
        mtime: (after.mtime(), after.mtime_nsec()),
        ctime: (after.ctime(), after.ctime_nsec()),
        hash,
    };
    Ok((hash, Some((key, st))))
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
