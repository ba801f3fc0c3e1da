//! Walking and removing directory trees that a container wrote: they may be
//! deeper than PATH_MAX (every step is relative to an open directory, never a
//! full path) and may have file systems mounted in them (a removal refuses
//! them, a walk does not enter them).

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Stat, StatxAttributes, StatxFlags};
use rustix::io::Errno;

fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in an open directory, without `.` and `..`.
fn names(dir: &OwnedFd) -> io::Result<Vec<CString>> {
    let mut out = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Open the directory `root` itself (not following a symlink); `None` if
/// it does not exist.
fn open_root(root: &Path) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// One entry met by [`walk`].
pub struct Node<'a> {
    /// Path relative to the walk's root, `/`-separated.
    pub rel: &'a [u8],
    pub stat: &'a Stat,
    /// The directory holding it, and its name there.
    pub dir: BorrowedFd<'a>,
    pub name: &'a CStr,
}

impl Node<'_> {
    /// A short path to the entry whatever its depth (through its directory's
    /// descriptor in /proc), valid during the visit.
    pub fn short_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd()))
            .join(OsStr::from_bytes(self.name.to_bytes()))
    }

    /// An extended attribute of the entry (not following symlinks); `None`
    /// when it has none of that name.
    pub fn xattr(&self, key: &str) -> Option<Vec<u8>> {
        let p = self.short_path();
        let mut buf = vec![0u8; 4096];
        match rustix::fs::lgetxattr(&p, key, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => None,
        }
    }
}

/// What [`walk`] does after a directory's visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    Enter,
    Skip,
}

/// Visit every entry below `root` (parents before their contents). A
/// directory is entered when `visit` says so and it is on `root`'s file
/// system. A missing `root` is an empty tree.
pub fn walk(root: &Path, visit: &mut dyn FnMut(&Node<'_>) -> io::Result<Walk>) -> io::Result<()> {
    let Some(fd) = open_root(root)? else {
        return Ok(());
    };
    let dev = rustix::fs::fstat(&fd)?.st_dev;
    walk_in(&fd, &mut Vec::new(), dev, visit)
}

fn walk_in(
    dir: &OwnedFd,
    rel: &mut Vec<u8>,
    dev: u64,
    visit: &mut dyn FnMut(&Node<'_>) -> io::Result<Walk>,
) -> io::Result<()> {
    for name in names(dir)? {
        let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue, // removed meanwhile
            Err(e) => return Err(e.into()),
        };
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        let node = Node {
            rel,
            stat: &st,
            dir: dir.as_fd(),
            name: &name,
        };
        let next = visit(&node)?;
        if is_dir(&st) && next == Walk::Enter && st.st_dev == dev {
            match open_dir_at(dir.as_fd(), &name) {
                Ok(sub) => walk_in(&sub, rel, dev, visit)?,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        rel.truncate(len);
    }
    Ok(())
}

/// Allocated bytes of the tree at `root` (`du -s -B1`: each inode once).
pub fn allocated(root: &Path) -> io::Result<u64> {
    let mut seen = HashSet::new();
    let mut total = match rustix::fs::lstat(root) {
        Ok(st) => st.st_blocks as u64 * 512,
        Err(Errno::NOENT) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    walk(root, &mut |n| {
        if n.stat.st_nlink <= 1 || is_dir(n.stat) || seen.insert((n.stat.st_dev, n.stat.st_ino)) {
            total += n.stat.st_blocks as u64 * 512;
        }
        Ok(Walk::Enter)
    })?;
    Ok(total)
}

/// Remove the directory `root` and everything in it, never entering another
/// mounted file system: a mount point found inside is refused with EBUSY and
/// its path, before anything below it is touched. A missing `root` is fine.
pub fn remove(root: &Path) -> io::Result<()> {
    let Some(fd) = open_root(root)? else {
        return Ok(());
    };
    if let Some(p) = first_mount(&fd, root)? {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!(
                "{}: a file system is mounted here; unmount it first",
                p.display()
            ),
        ));
    }
    remove_in(&fd)?;
    drop(fd);
    std::fs::remove_dir(root)
}

/// The first mount point inside the directory `root`, if any (a missing
/// `root` has none).
pub fn mount_inside(root: &Path) -> io::Result<Option<PathBuf>> {
    match open_root(root)? {
        Some(fd) => first_mount(&fd, root),
        None => Ok(None),
    }
}

/// The first mount point inside the tree (any file system mounted on a
/// directory below it, bind mounts of the same one too).
fn first_mount(dir: &OwnedFd, shown: &Path) -> io::Result<Option<PathBuf>> {
    for name in names(dir)? {
        let sx = match rustix::fs::statx(dir, &name, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::TYPE) {
            Ok(sx) => sx,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if u32::from(sx.stx_mode) & libc::S_IFMT != libc::S_IFDIR {
            continue;
        }
        let p = shown.join(OsStr::from_bytes(name.to_bytes()));
        let root = StatxAttributes::MOUNT_ROOT;
        if sx.stx_attributes_mask.contains(root) && sx.stx_attributes.contains(root) {
            return Ok(Some(p));
        }
        let sub = open_dir_at(dir.as_fd(), &name)?;
        if let Some(found) = first_mount(&sub, &p)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn remove_in(dir: &OwnedFd) -> io::Result<()> {
    for name in names(dir)? {
        let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if is_dir(&st) {
            let sub = open_dir_at(dir.as_fd(), &name)?;
            remove_in(&sub)?;
            rustix::fs::unlinkat(dir, &name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, &name, AtFlags::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_deeper_than_path_max_are_measured_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("deep");
        std::fs::create_dir(&root).unwrap();
        let mut dir = open_dir_at(
            rustix::fs::CWD,
            &CString::new(root.as_os_str().as_bytes()).unwrap(),
        )
        .unwrap();
        let name = CString::new("d".repeat(250)).unwrap();
        for _ in 0..30 {
            rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o755)).unwrap();
            dir = open_dir_at(dir.as_fd(), &name).unwrap();
        }
        let f = rustix::fs::openat(
            &dir,
            c"file",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        rustix::io::write(&f, &[1u8; 10_000]).unwrap();
        rustix::fs::linkat(&dir, c"file", &dir, c"link", AtFlags::empty()).unwrap();
        let mut files = 0;
        walk(&root, &mut |n| {
            files += (!is_dir(n.stat)) as u32;
            Ok(Walk::Enter)
        })
        .unwrap();
        assert_eq!(files, 2);
        let bytes = allocated(&root).unwrap();
        assert!((10_000..100_000 + 31 * 8192).contains(&bytes), "{bytes}");
        remove(&root).unwrap();
        assert!(!root.exists());
        remove(&root).unwrap(); // missing is fine
    }
}
