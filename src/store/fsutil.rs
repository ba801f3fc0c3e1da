//! Small file-system helpers shared by ingest, export and the object store:
//! data segments of sparse files, sparse-preserving copies, extended attributes,
//! file locks and directory sync. No `unsafe` here: everything goes through rustix.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{FlockOperation, SeekFrom};
use rustix::io::Errno;

/// The data segments `(offset, len)` of a file of `size` bytes, in order; holes are
/// what lies between them. File systems without SEEK_DATA support give one segment.
pub fn data_segments(file: &File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(Errno::NXIO) => break, // only a hole remains
            Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) if pos == 0 => {
                return Ok(vec![(0, size)]);
            }
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
            Ok(e) => e.min(size),
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        out.push((start, end - start));
        pos = end;
    }
    Ok(out)
}

/// Copy `segments` of `src` into `dst` at the same offsets, then set `dst`'s length
/// to `size`, so holes stay holes. Uses copy_file_range (in-kernel copy) and falls
/// back to read/write where the kernel refuses it (across file systems, some FUSE).
pub(crate) fn copy_segments(
    src: &File,
    dst: &File,
    segments: &[(u64, u64)],
    size: u64,
) -> io::Result<()> {
    for &(off, len) in segments {
        let (mut inoff, mut outoff) = (off, off);
        let end = off + len;
        while inoff < end {
            let want = usize::try_from(end - inoff)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match rustix::fs::copy_file_range(src, Some(&mut inoff), dst, Some(&mut outoff), want) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while it was copied",
                    ));
                }
                Ok(_) => {}
                Err(Errno::XDEV)
                | Err(Errno::NOSYS)
                | Err(Errno::OPNOTSUPP)
                | Err(Errno::INVAL) => {
                    copy_range_slow(src, dst, inoff, end - inoff)?;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    rustix::fs::ftruncate(dst, size)?;
    Ok(())
}

fn copy_range_slow(src: &File, dst: &File, mut off: u64, mut len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    while len > 0 {
        let n = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let got = src.read_at(&mut buf[..n], off)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was copied",
            ));
        }
        dst.write_all_at(&buf[..got], off)?;
        off += got as u64;
        len -= got as u64;
    }
    Ok(())
}

/// Hash a file's full logical content, reading only its data segments (holes are
/// hashed as zeros without being read). Returns the hash and the bytes read.
pub fn hash_segments(file: &File, segments: &[(u64, u64)], size: u64) -> io::Result<blake3::Hash> {
    use std::os::unix::fs::FileExt;
    static ZEROS: [u8; 1 << 16] = [0u8; 1 << 16];
    let mut hasher = blake3::Hasher::new();
    // Up to 1 MiB, never more than the largest segment: small files are the
    // common case and a zeroed 1 MiB buffer each would cost more than them.
    let largest = segments.iter().map(|s| s.1).max().unwrap_or(0);
    let mut buf = vec![0u8; largest.clamp(1, 1 << 20) as usize];
    let mut pos = 0u64;
    let feed_zeros = |hasher: &mut blake3::Hasher, mut n: u64| {
        while n > 0 {
            let k = (n.min(ZEROS.len() as u64)) as usize;
            hasher.update(&ZEROS[..k]);
            n -= k as u64;
        }
    };
    for &(off, len) in segments {
        feed_zeros(&mut hasher, off - pos);
        let mut at = off;
        let end = off + len;
        while at < end {
            let n = buf.len().min((end - at) as usize);
            let got = file.read_at(&mut buf[..n], at)?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was read",
                ));
            }
            if got >= 1 << 19 {
                hasher.update_rayon(&buf[..got]);
            } else {
                hasher.update(&buf[..got]);
            }
            at += got as u64;
        }
        pos = end;
    }
    feed_zeros(&mut hasher, size.saturating_sub(pos));
    Ok(hasher.finalize())
}

/// Hash a whole file by reading it (any file: a concurrent truncation gives a
/// short-read error, never a signal).
pub(crate) fn hash_read(file: &File) -> io::Result<blake3::Hash> {
    let len = file.metadata()?.len();
    hash_segments(file, &[(0, len)], len)
}

/// Hash a whole file through a read-only memory map. Only for files the store
/// owns and nothing else writes (staged objects of this process, published
/// objects during `verify`): see `sys::map_readonly` for why.
pub(crate) fn hash_mapped(file: &File) -> io::Result<blake3::Hash> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(blake3::hash(b""));
    }
    if len < 1 << 16 {
        // Small: read from offset 0 (whatever the file offset) into memory.
        return hash_segments(file, &[(0, len)], len);
    }
    let map = crate::store::sys::map_readonly(file)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_rayon(&map);
    Ok(hasher.finalize())
}

/// Read all extended attributes of `path` (not following symlinks), sorted by name.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let want = rustix::fs::llistxattr_query(path)?;
                names.resize(want.max(names.len() * 2), 0);
            }
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = std::ffi::OsStr::from_bytes(name);
        let mut val = vec![0u8; 256];
        let got = loop {
            match rustix::fs::lgetxattr(path, cname, &mut val[..]) {
                Ok(k) => break Some(k),
                Err(Errno::RANGE) => {
                    let want = rustix::fs::lgetxattr_query(path, cname)?;
                    val.resize(want.max(val.len() * 2), 0);
                }
                Err(Errno::NODATA) => break None, // removed meanwhile
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(k) = got {
            val.truncate(k);
            out.push((name.to_vec(), val));
        }
    }
    out.sort();
    Ok(out)
}

/// Remove every extended attribute of an open file.
pub(crate) fn clear_xattrs(file: &File) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::flistxattr(file, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    };
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        match rustix::fs::fremovexattr(file, std::ffi::OsStr::from_bytes(name)) {
            Ok(()) | Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Set extended attributes on `path` (not following symlinks).
pub(crate) fn write_xattrs(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    for (name, value) in xattrs {
        rustix::fs::lsetxattr(
            path,
            std::ffi::OsStr::from_bytes(name),
            value,
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    Ok(())
}

/// Take an exclusive lock on an open file, waiting if `wait`; `Ok(false)` when
/// `wait` is false and someone else holds it.
pub(crate) fn lock_exclusive(file: &File, wait: bool) -> io::Result<bool> {
    let op = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(file.as_fd(), op) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) if !wait => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Start writing a file's dirty pages to disk without waiting (posix_fadvise
/// DONTNEED starts writeback of dirty pages and drops only pages already clean).
/// Ingest calls it on each staged object so that the one `syncfs` before publish
/// finds most data already on disk instead of waiting for all of it.
pub(crate) fn start_writeback(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
}

/// Flush every dirty page and inode of the file system holding `path` to disk.
pub(crate) fn sync_fs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    rustix::fs::syncfs(&f)?;
    Ok(())
}

/// fsync a directory: makes the names created, renamed or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A failpoint on an I/O step: with the `failpoints` feature (test builds only),
/// `FAILPOINTS=NAME=return(ENOSPC)` (or `return(EIO)`, `return` = EIO) makes the
/// step fail with that error. Without the feature it compiles to `Ok(())`.
pub(crate) fn failpoint_io(name: &str) -> io::Result<()> {
    #[cfg(feature = "failpoints")]
    {
        if let Some(arg) = fail::eval(name, |arg| arg.unwrap_or_default()) {
            let code = match arg.as_str() {
                "ENOSPC" => libc::ENOSPC,
                _ => libc::EIO,
            };
            return Err(io::Error::from_raw_os_error(code));
        }
    }
    let _ = name;
    Ok(())
}

/// Create a directory only its owner can enter (0700, whatever the umask); an
/// existing one is left as it is.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            // The umask may have removed bits we want, never added any.
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}
