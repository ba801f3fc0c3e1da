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

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::store::error::{IoContext, Result};
use crate::store::fstree::{self, Walk};
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
/// what its upper directory deletes or replaces, plus what it holds. The walk
/// is relative to open directories (a container can nest deeper than
/// PATH_MAX). A template hardlink group written through one name is the
/// container's own under every name (overlayfs keeps the group whole).
pub fn usage(base: Manifest, private: &Path) -> Result<TreeUsage> {
    // The template's visible files by path: size and hardlink group.
    let mut visible: Files = HashMap::new();
    let mut names_of: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    for e in base.entries {
        if e.kind == Kind::File {
            if e.link_group != 0 {
                names_of
                    .entry(e.link_group)
                    .or_default()
                    .push(e.path.clone());
            }
            visible.insert(e.path, (e.size, e.link_group));
        }
    }
    let base_files = visible.clone();
    let mut own = TreeUsage::default();
    let mut own_inodes = HashSet::new();
    let upper = upper_dir(private);
    fstree::walk(&upper, &mut |n| {
        let st = n.stat;
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFCHR && st.st_rdev == 0 {
            hide_below(&mut visible, n.rel); // a whiteout
            return Ok(Walk::Skip);
        }
        if kind == libc::S_IFDIR {
            if n.xattr("trusted.overlay.opaque").is_some() {
                hide_below(&mut visible, n.rel);
            }
            if let Some(origin) = n.xattr("trusted.overlay.redirect") {
                // A template directory renamed here: its files show here now.
                let parent = n.rel.rsplit_once_byte().map_or(&b""[..], |(p, _)| p);
                let from = origin_path(&origin, parent);
                let prefix = [from.as_slice(), b"/"].concat();
                for (k, v) in &base_files {
                    if let Some(rest) = k.strip_prefix(prefix.as_slice()) {
                        visible.insert([n.rel, b"/", rest].concat(), *v);
                    }
                }
            }
            return Ok(Walk::Enter);
        }
        // The path's template file (and its other names) is replaced.
        if let Some((_, group)) = visible.remove(n.rel)
            && group != 0
        {
            for other in names_of.get(&group).into_iter().flatten() {
                visible.remove(other);
            }
        }
        if kind == libc::S_IFREG && own_inodes.insert(st.st_ino) {
            let size = st.st_size as u64;
            own.logical_bytes += size;
            if n.xattr("trusted.overlay.metacopy").is_some() {
                // Attributes only: the bytes are still a template object (of
                // this path, or of the one it was renamed from); the upper
                // inode keeps the file's size.
                own.shared_bytes += size;
            }
        }
        Ok(Walk::Enter)
    })
    .at(&upper)?;
    let mut groups = HashSet::new();
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

/// Files of the template as this container sees them, keyed by path.
type Files = HashMap<Vec<u8>, (u64, u32)>;

/// Where a renamed directory came from: `trusted.overlay.redirect` is an
/// absolute path (`/a/b`) or a name in the same parent directory.
fn origin_path(v: &[u8], parent: &[u8]) -> Vec<u8> {
    match v.strip_prefix(b"/") {
        Some(abs) => abs.to_vec(),
        None if parent.is_empty() => v.to_vec(),
        None => [parent, b"/", v].concat(),
    }
}

fn hide_below(visible: &mut Files, rel: &[u8]) {
    let prefix = [rel, b"/"].concat();
    visible.retain(|k, _| k != rel && !k.starts_with(&prefix));
}

/// Splitting a path at its last `/`.
trait RsplitOnce {
    fn rsplit_once_byte(&self) -> Option<(&[u8], &[u8])>;
}

impl RsplitOnce for [u8] {
    fn rsplit_once_byte(&self) -> Option<(&[u8], &[u8])> {
        let i = self.iter().rposition(|&b| b == b'/')?;
        Some((&self[..i], &self[i + 1..]))
    }
}
