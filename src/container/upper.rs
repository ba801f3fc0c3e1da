//! The private area of a kernel container: an overlayfs upper directory
//! `private/<CT>/upper` and its work directory `private/<CT>/work`, on the
//! store's file system. The kernel writes them while the container is mounted;
//! vzstore makes them at create and reads them for reports.
//!
//! What overlayfs leaves in an upper directory (Documentation/filesystems/
//! overlayfs.rst): a file the container wrote is there whole; a file it only
//! chmod'ed or chown'ed is a metacopy (`trusted.overlay.metacopy`), its bytes
//! still the template's; a deleted path is a whiteout (a 0:0 character device);
//! a directory that replaced a template one is opaque (`trusted.overlay.opaque`
//! = `y`); a renamed template directory carries `trusted.overlay.redirect`.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::manifest::{Entry, Kind, Manifest};
use crate::store::report::TreeUsage;

/// `private/<CT>/upper`.
pub fn upper_dir(private: &Path) -> std::path::PathBuf {
    private.join("upper")
}

/// `private/<CT>/work`.
pub fn work_dir(private: &Path) -> std::path::PathBuf {
    private.join("work")
}

/// Make the upper and work directories of a new container. The merged root
/// takes its attributes from the upper root, so that gets the template root's
/// mode, owner, mtime and xattrs (its own `trusted.overlay.*` escaped, as
/// overlayfs stores them).
pub(crate) fn create(private: &Path, root: &Entry) -> Result<()> {
    let upper = upper_dir(private);
    let work = work_dir(private);
    fsutil::create_private_dir(&upper).at(&upper)?;
    fsutil::create_private_dir(&work).at(&work)?;
    let xattrs: Vec<(Vec<u8>, Vec<u8>)> = root
        .xattrs
        .iter()
        .map(|(n, v)| match n.strip_prefix(b"trusted.overlay.") {
            Some(rest) => ([b"trusted.overlay.overlay.", rest].concat(), v.clone()),
            None => (n.clone(), v.clone()),
        })
        .collect();
    fsutil::write_xattrs(&upper, &xattrs).at(&upper)?;
    rustix::fs::chown(
        &upper,
        Some(rustix::fs::Uid::from_raw(root.uid)),
        Some(rustix::fs::Gid::from_raw(root.gid)),
    )
    .at(&upper)?;
    rustix::fs::chmod(&upper, rustix::fs::Mode::from_raw_mode(root.mode & 0o7777)).at(&upper)?;
    let t = rustix::fs::Timespec {
        tv_sec: root.mtime_sec,
        tv_nsec: i64::from(root.mtime_nsec),
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        &upper,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .at(&upper)
}

/// Logical and shared bytes of a kernel container: its template's files, less
/// what its upper directory deletes or replaces, plus what it holds.
pub fn usage(base: Manifest, private: &Path) -> Result<TreeUsage> {
    // The template's visible files by path: size, and the inode they belong to
    // (hardlinks count once).
    let mut visible: HashMap<Vec<u8>, (u64, u32)> = HashMap::new();
    for e in &base.entries {
        if e.kind == Kind::File {
            visible.insert(e.path.clone(), (e.size, e.link_group));
        }
    }
    let base_files = visible.clone();
    let mut own = TreeUsage::default();
    let mut own_inodes = std::collections::HashSet::new();
    let upper = upper_dir(private);
    if upper.is_dir() {
        walk(
            &upper,
            b"",
            &base_files,
            &mut visible,
            &mut own,
            &mut own_inodes,
        )?;
    }
    let mut groups = std::collections::HashSet::new();
    let mut shared = 0;
    for (size, group) in visible.values() {
        if *group == 0 || groups.insert(*group) {
            shared += size;
        }
    }
    Ok(TreeUsage {
        logical_bytes: own.logical_bytes + shared,
        shared_bytes: shared + own.shared_bytes,
    })
}

fn has_xattr(p: &Path, name: &str) -> bool {
    rustix::fs::lgetxattr(p, name, &mut [0u8; 0][..]).is_ok()
}

/// Where a renamed directory came from: `trusted.overlay.redirect` is an
/// absolute path (`/a/b`) or a name in the same parent directory.
fn redirect(p: &Path, parent: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(p, "trusted.overlay.redirect", &mut buf[..]).ok()?;
    let v = &buf[..n];
    Some(match v.strip_prefix(b"/") {
        Some(abs) => abs.to_vec(),
        None if parent.is_empty() => v.to_vec(),
        None => [parent, b"/", v].concat(),
    })
}

fn hide_below(visible: &mut Files, rel: &[u8]) {
    let prefix = [rel, b"/"].concat();
    visible.retain(|k, _| k != rel && !k.starts_with(&prefix));
}

/// Files of the template as this container sees them, keyed by path.
type Files = HashMap<Vec<u8>, (u64, u32)>;

fn walk(
    dir: &Path,
    rel: &[u8],
    base: &Files,
    visible: &mut Files,
    own: &mut TreeUsage,
    own_inodes: &mut std::collections::HashSet<u64>,
) -> Result<()> {
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let p = e.path();
        let name = e.file_name();
        let child: Vec<u8> = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        let md = fs::symlink_metadata(&p).at(&p)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            hide_below(visible, &child); // a whiteout
        } else if ft.is_dir() {
            if has_xattr(&p, "trusted.overlay.opaque") {
                hide_below(visible, &child);
            }
            if let Some(origin) = redirect(&p, rel) {
                // A template directory renamed here: its files show here now.
                let from = [origin.as_slice(), b"/"].concat();
                for (k, v) in base {
                    if let Some(rest) = k.strip_prefix(from.as_slice()) {
                        visible.insert([child.as_slice(), b"/", rest].concat(), *v);
                    }
                }
            }
            walk(&p, &child, base, visible, own, own_inodes)?;
        } else if ft.is_file() && has_xattr(&p, "trusted.overlay.metacopy") {
            // Attributes only: the bytes are still a template object (of this
            // path, or of the one it was renamed from), and the upper inode
            // keeps the file's size.
            visible.remove(&child);
            if own_inodes.insert(md.ino()) {
                own.logical_bytes += md.len();
                own.shared_bytes += md.len();
            }
        } else {
            hide_below(visible, &child);
            if ft.is_file() && own_inodes.insert(md.ino()) {
                own.logical_bytes += md.len();
            }
        }
    }
    Ok(())
}
