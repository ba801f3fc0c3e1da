//! Writing a tree into a directory (the `dir` format of [`crate::export`]) with every byte
//! and every piece of recorded metadata (owner, mode with setuid/setgid/sticky,
//! mtime in nanoseconds, xattrs, symlink targets, hardlinks, device numbers, holes).
//! Each file's content is re-hashed after copying, so a corrupt object is reported,
//! never silently exported.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest};
use crate::store::objects;

/// `dest` must be missing or an empty directory; nothing is made.
pub fn check_dest(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => prepare_dest(dest),
    }
}

/// `dest` must be missing (it is made) or an empty directory.
pub fn prepare_dest(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir(dest).at(dest),
        Err(e) => Err(e).at(dest),
        Ok(m) if !m.is_dir() => Err(Error::BadDestination {
            path: dest.to_path_buf(),
            reason: "exists and is not a directory",
        }),
        Ok(_) => {
            if fs::read_dir(dest).at(dest)?.next().is_some() {
                return Err(Error::BadDestination {
                    path: dest.to_path_buf(),
                    reason: "is not empty",
                });
            }
            Ok(())
        }
    }
}

fn target(dest: &Path, e: &Entry) -> PathBuf {
    if e.path.is_empty() {
        dest.to_path_buf()
    } else {
        dest.join(OsStr::from_bytes(&e.path))
    }
}

/// Write every entry of `m` under the existing directory `dest`.
pub fn write_tree(store: &Store, m: &Manifest, dest: &Path) -> Result<()> {
    let open = |i: usize| match m.entries[i].hash {
        Some(h) => objects::open(store, &h),
        None => Err(no_hash(&m.entries[i])),
    };
    write_tree_from(m, dest, &open, true)
}

fn no_hash(e: &Entry) -> Error {
    Error::CorruptRecord {
        key: String::from_utf8_lossy(&e.path).into_owned(),
        reason: "regular file without a hash".into(),
    }
}

/// Write every entry of `m` under the existing directory `dest`, the bytes
/// of entry `i` read from `open(i)`; with `verify`, each copy is hashed
/// against the entry's hash (entries without one are a container's own
/// files).
pub fn write_tree_from(
    m: &Manifest,
    dest: &Path,
    open: &(dyn Fn(usize) -> Result<std::fs::File> + Sync),
    verify: bool,
) -> Result<()> {
    // 1. Directories (parents precede children in path order).
    for e in m
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Dir && !e.path.is_empty())
    {
        let p = target(dest, e);
        fs::create_dir(&p).at(&p)?;
    }
    // 2. File contents in parallel: one copy per hardlink group (its leader).
    let leaders = m.link_leaders();
    let is_leader = |i: usize, e: &Entry| e.link_group == 0 || leaders[&e.link_group] == i;
    let copies: Vec<usize> = m
        .entries
        .iter()
        .enumerate()
        .filter(|(i, e)| e.kind == Kind::File && is_leader(*i, e))
        .map(|(i, _)| i)
        .collect();
    copies.par_iter().try_for_each(|&i| {
        let e = &m.entries[i];
        copy_file(&open(i)?, e, &target(dest, e), verify)
    })?;
    // 3. Everything else, hardlinks included.
    for (i, e) in m.entries.iter().enumerate() {
        let p = target(dest, e);
        let mode = Mode::from_raw_mode(0o600);
        match e.kind {
            Kind::Dir => {}
            Kind::File => {
                if !is_leader(i, e) {
                    let lp = target(dest, &m.entries[leaders[&e.link_group]]);
                    fs::hard_link(&lp, &p).at(&p)?;
                }
            }
            Kind::Symlink => std::os::unix::fs::symlink(OsStr::from_bytes(&e.target), &p).at(&p)?,
            Kind::Fifo => rustix::fs::mknodat(CWD, &p, FileType::Fifo, mode, 0).at(&p)?,
            Kind::Socket => rustix::fs::mknodat(CWD, &p, FileType::Socket, mode, 0).at(&p)?,
            Kind::CharDev => {
                rustix::fs::mknodat(CWD, &p, FileType::CharacterDevice, mode, e.rdev).at(&p)?
            }
            Kind::BlockDev => {
                rustix::fs::mknodat(CWD, &p, FileType::BlockDevice, mode, e.rdev).at(&p)?
            }
        }
    }
    // 4. Metadata, children before parents so directory mtimes stick.
    for e in m.entries.iter().rev() {
        apply_metadata(&target(dest, e), e)?;
    }
    Ok(())
}

fn copy_file(src: &std::fs::File, e: &Entry, dest: &Path, verify: bool) -> Result<()> {
    let out = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .at(dest)?;
    let size = src.metadata().at(dest)?.len();
    let segments = fsutil::data_segments(src, size).at(dest)?;
    fsutil::copy_segments(src, &out, &segments, size).at(dest)?;
    if let (true, Some(hash)) = (verify, e.hash)
        && (size != e.size || Hash::from(fsutil::hash_read(&out).at(dest)?) != hash)
    {
        return Err(Error::CorruptObject(hash));
    }
    Ok(())
}

/// Set owner, mode, xattrs and mtime of `p` from `e`, in the order that keeps all
/// of them: chown first (it clears setuid and capabilities), then mode, then xattrs.
pub fn apply_metadata(p: &Path, e: &Entry) -> Result<()> {
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    rustix::fs::chownat(
        CWD,
        p,
        Some(rustix::fs::Uid::from_raw(e.uid)),
        Some(rustix::fs::Gid::from_raw(e.gid)),
        nofollow,
    )
    .at(p)?;
    if e.kind != Kind::Symlink {
        rustix::fs::chmodat(CWD, p, Mode::from_raw_mode(e.mode), AtFlags::empty()).at(p)?;
    }
    fsutil::write_xattrs(p, &e.xattrs).at(p)?;
    let t = Timespec {
        tv_sec: e.mtime_sec,
        tv_nsec: e.mtime_nsec as _,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, p, &times, nofollow).at(p)?;
    Ok(())
}
