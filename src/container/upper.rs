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

use std::path::Path;

use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::manifest::Entry;

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
    crate::container::upper_write::set_attrs(&upper, root, &[])
}
