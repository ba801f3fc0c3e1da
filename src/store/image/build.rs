//! A template manifest as EROFS inodes for the kernel backend.
//!
//! Every entry keeps its type, mode, owner, mtime (ns), xattrs and hardlinks.
//! A regular file of at most [`INLINE_MAX`] bytes keeps its bytes in the image;
//! a larger one is a hole of its size with `trusted.overlay.metacopy` (empty)
//! and `trusted.overlay.redirect` = `/ab/<62 hex>`, its object's path below
//! `objects/`, which overlayfs mounts as a data-only layer. The template's own
//! `trusted.overlay.*` xattrs are escaped as `trusted.overlay.overlay.*`, so
//! overlayfs shows them unchanged and never acts on them.

use std::collections::HashMap;

use super::erofs::{self, Body, Inode, Xattr};
use crate::store::error::{Error, Result};
use crate::store::hash::Hash;
use crate::store::manifest::{Entry, Kind, Manifest};

/// Files up to this size keep their bytes in the image: no object open and no
/// redirect for the many tiny files of an OS tree, at a small cost in image size.
pub const INLINE_MAX: u64 = 64;

/// Why a manifest has no kernel image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An entry the kernel backend cannot show as it is.
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: &'static str },
    /// The tree does not fit the image format.
    #[error("{0}")]
    Layout(String),
    /// The manifest is not a tree (no root, or a parent missing).
    #[error("{path}: the manifest names it but not its parent directory")]
    Orphan { path: String },
}

fn shown(p: &[u8]) -> String {
    if p.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(p).into_owned()
    }
}

/// The inodes of template `label`'s manifest `m` (root first). `small(hash,
/// size)` returns the bytes of a file small enough to be kept in the image.
pub(crate) fn inodes(
    m: &Manifest,
    label: &str,
    small: &mut dyn FnMut(&Hash, u64) -> Result<Vec<u8>>,
) -> Result<Vec<Inode>> {
    let fail = |err| Error::Image {
        template: label.to_string(),
        err,
    };
    let mut out: Vec<Inode> = Vec::with_capacity(m.entries.len());
    let mut by_path: HashMap<&[u8], usize> = HashMap::with_capacity(m.entries.len());
    let mut group_inode: HashMap<u32, usize> = HashMap::new();
    for e in &m.entries {
        if e.path.is_empty() {
            if e.kind != Kind::Dir {
                return Err(fail(ImageError::Unsupported {
                    path: shown(&e.path),
                    reason: "the root is not a directory",
                }));
            }
        } else if out.is_empty() {
            return Err(fail(ImageError::Orphan {
                path: shown(&e.path),
            }));
        }
        let (parent_path, name) = match e.path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&e.path[..i], &e.path[i + 1..]),
            None => (&e.path[..0], &e.path[..]),
        };
        let parent = if e.path.is_empty() {
            0
        } else {
            match by_path.get(parent_path) {
                Some(&p) if matches!(out[p].body, Body::Dir { .. }) => p,
                _ => {
                    return Err(fail(ImageError::Orphan {
                        path: shown(&e.path),
                    }));
                }
            }
        };
        // A later member of a hardlink group is one more name of its leader.
        if let Some(&leader) = group_inode.get(&e.link_group).filter(|_| e.link_group != 0) {
            out[leader].nlink += 1;
            add_entry(&mut out[parent], name, leader);
            continue;
        }
        let inode = inode_of(e, parent, small)?.map_err(fail)?;
        let idx = out.len();
        out.push(inode);
        if e.link_group != 0 {
            group_inode.insert(e.link_group, idx);
        }
        if !e.path.is_empty() {
            add_entry(&mut out[parent], name, idx);
            if e.kind == Kind::Dir {
                out[parent].nlink += 1;
            }
        }
        by_path.insert(&e.path, idx);
    }
    if out.is_empty() {
        return Err(fail(ImageError::Orphan { path: "/".into() }));
    }
    Ok(out)
}

fn add_entry(dir: &mut Inode, name: &[u8], target: usize) {
    if let Body::Dir { entries, .. } = &mut dir.body {
        entries.push((name.to_vec(), target));
    }
}

/// One entry's inode: `Err` for a store failure, `Ok(Err)` for an entry the
/// image cannot hold.
fn inode_of(
    e: &Entry,
    parent: usize,
    small: &mut dyn FnMut(&Hash, u64) -> Result<Vec<u8>>,
) -> Result<std::result::Result<Inode, ImageError>> {
    let path = || shown(&e.path);
    let mut xattrs = Vec::with_capacity(e.xattrs.len() + 2);
    for (name, value) in &e.xattrs {
        if name.len() > 255 + 16 || value.len() > usize::from(u16::MAX) {
            return Ok(Err(ImageError::Unsupported {
                path: path(),
                reason: "an extended attribute name or value longer than EROFS stores",
            }));
        }
        match split_name(name) {
            Some((index, suffix)) => xattrs.push(Xattr {
                index,
                suffix,
                value: value.clone(),
            }),
            None => {
                return Ok(Err(ImageError::Unsupported {
                    path: path(),
                    reason: "an extended attribute outside the user, trusted, security and ACL name spaces",
                }));
            }
        }
    }
    let (type_bits, body) = match e.kind {
        Kind::Dir => (
            libc::S_IFDIR,
            Body::Dir {
                parent,
                entries: Vec::new(),
            },
        ),
        Kind::File => {
            let Some(hash) = e.hash else {
                return Ok(Err(ImageError::Unsupported {
                    path: path(),
                    reason: "a regular file without a content hash",
                }));
            };
            if e.size <= INLINE_MAX {
                (libc::S_IFREG, Body::Data(small(&hash, e.size)?))
            } else {
                let hex = hash.to_hex();
                xattrs.push(Xattr {
                    index: erofs::XATTR_TRUSTED,
                    suffix: b"overlay.metacopy".to_vec(),
                    value: Vec::new(),
                });
                xattrs.push(Xattr {
                    index: erofs::XATTR_TRUSTED,
                    suffix: b"overlay.redirect".to_vec(),
                    value: format!("/{}/{}", &hex[..2], &hex[2..]).into_bytes(),
                });
                (libc::S_IFREG, Body::Hole)
            }
        }
        Kind::Symlink => (libc::S_IFLNK, Body::Data(e.target.clone())),
        Kind::CharDev | Kind::BlockDev => {
            let (major, minor) = (libc::major(e.rdev), libc::minor(e.rdev));
            if e.kind == Kind::CharDev && major == 0 && minor == 0 {
                return Ok(Err(ImageError::Unsupported {
                    path: path(),
                    reason: "a character device 0:0 is an overlayfs whiteout and would hide itself; serve this template with the FUSE backend",
                }));
            }
            let Some(rdev) = encode_dev(major, minor) else {
                return Ok(Err(ImageError::Unsupported {
                    path: path(),
                    reason: "a device number beyond 12-bit major / 20-bit minor",
                }));
            };
            let t = if e.kind == Kind::CharDev {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            (t, Body::Device(rdev))
        }
        Kind::Fifo => (libc::S_IFIFO, Body::Empty),
        Kind::Socket => (libc::S_IFSOCK, Body::Empty),
    };
    Ok(Ok(Inode {
        mode: (type_bits | (e.mode & 0o7777)) as u16,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime_sec,
        mtime_nsec: e.mtime_nsec,
        nlink: if e.kind == Kind::Dir { 2 } else { 1 },
        size: e.size,
        xattrs,
        body,
    }))
}

/// Split an xattr name into EROFS's prefix index and the rest; the template's
/// own `trusted.overlay.*` names are escaped. `None` for a name space EROFS
/// cannot store.
fn split_name(name: &[u8]) -> Option<(u8, Vec<u8>)> {
    match name {
        b"system.posix_acl_access" => return Some((erofs::XATTR_POSIX_ACL_ACCESS, Vec::new())),
        b"system.posix_acl_default" => return Some((erofs::XATTR_POSIX_ACL_DEFAULT, Vec::new())),
        _ => {}
    }
    if let Some(rest) = name.strip_prefix(b"user.") {
        return Some((erofs::XATTR_USER, rest.to_vec()));
    }
    if let Some(rest) = name.strip_prefix(b"security.") {
        return Some((erofs::XATTR_SECURITY, rest.to_vec()));
    }
    if let Some(rest) = name.strip_prefix(b"trusted.") {
        if let Some(ovl) = rest.strip_prefix(b"overlay.") {
            return Some((erofs::XATTR_TRUSTED, [b"overlay.overlay.", ovl].concat()));
        }
        return Some((erofs::XATTR_TRUSTED, rest.to_vec()));
    }
    None
}

/// The kernel's `new_encode_dev` of a device number, as EROFS stores it.
fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_erofs_indexes_and_overlay_names_are_escaped() {
        assert_eq!(
            split_name(b"user.a"),
            Some((erofs::XATTR_USER, b"a".to_vec()))
        );
        assert_eq!(
            split_name(b"trusted.overlay.redirect"),
            Some((erofs::XATTR_TRUSTED, b"overlay.overlay.redirect".to_vec()))
        );
        assert_eq!(
            split_name(b"trusted.x"),
            Some((erofs::XATTR_TRUSTED, b"x".to_vec()))
        );
        assert_eq!(
            split_name(b"system.posix_acl_access"),
            Some((erofs::XATTR_POSIX_ACL_ACCESS, vec![]))
        );
        assert_eq!(split_name(b"system.other"), None);
    }

    #[test]
    fn device_numbers_encode_as_the_kernel_decodes() {
        // new_decode_dev: major = (dev & 0xfff00) >> 8, minor = (dev & 0xff) | ((dev >> 12) & 0xfff00)
        for (ma, mi) in [(1u32, 3u32), (8, 17), (259, 1 << 19), (4095, 0xfffff)] {
            let d = encode_dev(ma, mi).unwrap();
            assert_eq!((d & 0xfff00) >> 8, ma);
            assert_eq!((d & 0xff) | ((d >> 12) & 0xfff00), mi);
        }
        assert_eq!(encode_dev(4096, 0), None);
    }
}
