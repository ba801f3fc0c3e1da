//! The kernel backend: a container's root is an overlayfs mount whose lower
//! layer is its template's EROFS image (`store::image`), whose data-only layer
//! is the store's `objects/` (reached only through the image's redirects) and
//! whose upper and work directories are the container's private area
//! (`container::upper`). No process serves it: the kernel reads the shared
//! objects, so every container of every template shares one page cache, and
//! overlayfs copies a file up into the upper directory before any write, so no
//! container can change an object.
//!
//! Mounting uses the new mount API: the image is mounted detached (directly
//! from the file on Linux 6.12+, else through a loop device that goes away with
//! the mount), then handed to overlayfs as `/proc/self/fd/N`. Nothing is left
//! to clean after a reboot: the mounts and loop devices are gone, the upper
//! directory stays, and overlayfs clears its work directory at the next mount.
//!
//! Needs: CAP_SYS_ADMIN, EROFS with chunk-based files (5.15+), overlayfs with
//! metacopy, redirect_dir and data-only lower layers (`datadir+`, 6.8+).
//! A missing piece is named in the error.

mod fsmount;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use crate::container::{self, upper};
use crate::daemon::mountinfo;
use crate::mount::{self, MountBackend, MountOptions};
use crate::store::Store;
use crate::store::catalog::{Catalog, ContainerRecord};
use crate::store::error::IoContext;
use crate::store::error::{Error, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::image::{self, CheckedImage};
use crate::store::lock;
use crate::store::name::TemplateRef;
use crate::store::sys;
use fsmount::{FsContext, MountError};

/// Set to `1` to mount images through a loop device even where the kernel can
/// mount the file directly (tests, and kernels whose file-backed EROFS misbehaves).
pub const FORCE_LOOP_ENV: &str = "VZSTORE_EROFS_LOOP";

/// The kernel backend (stateless).
pub struct KernelBackend;

impl MountBackend for KernelBackend {
    fn mount(
        &self,
        store: &Store,
        rec: &ContainerRecord,
        mountpoint: &Path,
        _opts: MountOptions,
    ) -> Result<()> {
        let ct = &rec.name;
        let failed = |e: MountError| Error::MountFailed {
            container: ct.clone(),
            reason: e.text,
        };
        // Held for the mount's setup only: a destroy or a second mount waits.
        // A mount that got past the caller's check meanwhile is refused by
        // overlayfs itself (its upper directory is in use: EBUSY, explained).
        let Some(_lock) = container::try_lock_mount(store, ct)? else {
            return Err(Error::AlreadyMounted(ct.clone()));
        };
        // Read again under the lock: a rebase may have switched the base, and
        // one that died after its commit is finished first.
        let rec = &Catalog::open_read_only(store)?
            .container(ct)?
            .ok_or_else(|| Error::ContainerNotFound(ct.clone()))?;
        container::pending::settle(&container::private_dir(store, ct), rec)?;
        let image = open_image(store, rec)?;
        let lower = shared_lower(store, &image)?;
        let mnt = match mount_overlay(store, ct, &lower) {
            Ok(m) => m,
            Err(e) => {
                release_lower(store, &lower);
                return Err(failed(e));
            }
        };
        fsmount::attach(&mnt, mountpoint).map_err(failed)?;
        mount::record_mountpoint(store, ct, mountpoint)
    }

    fn umount(&self, store: &Store, ct: &str, mountpoint: &Path) -> Result<()> {
        let lower = mountinfo::options_of(&mount::fsname(store, ct)).and_then(|o| lower_of(&o));
        mountinfo::unmount(mountpoint)?;
        mount::clear_mountpoint(store, ct);
        if let Some(lower) = lower {
            release_lower(store, &lower);
        }
        Ok(())
    }

    fn is_mounted(&self, store: &Store, ct: &str) -> Result<bool> {
        Ok(mountinfo::find_source(&mount::fsname(store, ct)).is_some())
    }

    fn stale_at(&self, _p: &Path) -> bool {
        // No daemon can die under a kernel mount.
        false
    }
}

/// The container's template image, opened and checked (written again if it
/// is missing or damaged; see [`image::open_checked`]).
fn open_image(store: &Store, rec: &ContainerRecord) -> Result<CheckedImage> {
    let db = Catalog::open_read_only(store)?;
    let t = db.resolve(&TemplateRef {
        name: rec.template.clone(),
        version: Some(rec.version),
    })?;
    let checked = image::open_checked(store, &t, &mut || db.manifest(&t.name, t.version))?;
    drop(db);
    if let Some((digest, hash)) = checked.record {
        Catalog::open(store)?.set_template_image(&t, digest, hash)?;
    }
    Ok(checked)
}

/// `<store>/lower/<digest>`: where a template image is mounted once for all
/// its kernel containers (they share its inodes and page cache).
fn lower_dir(store: &Store, digest: &Hash) -> PathBuf {
    store.root().join("lower").join(digest.to_hex())
}

/// The image's shared mount, made now if it is not mounted (after a reboot,
/// or when its last container was unmounted) or if the image was written
/// again (the old mount serves the old file). Serialized per image.
fn shared_lower(store: &Store, image: &CheckedImage) -> Result<PathBuf> {
    let hex = image.digest.to_hex();
    let _lock = lock::acquire(&store.lock_path(&format!("lower-{}", &hex[..16])))?;
    let dir = lower_dir(store, &image.digest);
    let failed = |e: MountError| Error::MountFailed {
        container: format!("(image {})", dir.display()),
        reason: e.text,
    };
    let mounted = rustix::fs::statfs(&dir).is_ok_and(|s| s.f_type as u32 == EROFS_MAGIC);
    if mounted && !image.written {
        return Ok(dir);
    }
    if mounted {
        mountinfo::detach(&dir)?;
    }
    let parent = store.root().join("lower");
    fsutil::create_private_dir(&parent).at(&parent)?;
    fsutil::create_private_dir(&dir).at(&dir)?;
    let mnt = mount_image(&image.file).map_err(failed)?;
    fsmount::attach(&mnt, &dir).map_err(failed)?;
    Ok(dir)
}

/// After a container's overlay is gone: unmount its image's shared mount if
/// no other overlay of this mount namespace uses it (one left behind is
/// harmless and reused).
fn release_lower(store: &Store, lower: &Path) {
    let Some(name) = lower.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(_lock) =
        lock::acquire(&store.lock_path(&format!("lower-{}", &name[..16.min(name.len())])))
    else {
        return;
    };
    let option = format!("lowerdir+={}", lower.display());
    if mountinfo::any_options_contain(&option) {
        return;
    }
    if mountinfo::detach(lower).is_ok() {
        let _ = std::fs::remove_dir(lower);
    }
}

/// A detached overlayfs of container `ct`: the image mounted at `lower` as
/// lower layer, `objects/` as data-only layer, its upper and work directories.
fn mount_overlay(store: &Store, ct: &str, lower: &Path) -> Result<OwnedFd, MountError> {
    let private = container::private_dir(store, ct);
    let ovl = FsContext::open("overlay")?;
    ovl.set("source", mount::fsname(store, ct))?;
    ovl.set("lowerdir+", lower)?;
    ovl.set("datadir+", store.objects_dir()).map_err(|e| match e.errno {
        Errno::INVAL => MountError {
            errno: e.errno,
            text: format!(
                "overlayfs of this kernel has no data-only lower layers (datadir+, Linux 6.8+): {e}"
            ),
        },
        _ => e,
    })?;
    ovl.set("upperdir", upper::upper_dir(&private))?;
    ovl.set("workdir", upper::work_dir(&private))?;
    for (key, value) in [("redirect_dir", "on"), ("metacopy", "on"), ("index", "on")] {
        ovl.set(key, value)?;
    }
    ovl.mount(MountAttrFlags::empty())
        .map_err(|e| match e.errno {
            Errno::BUSY => explain_busy(store, ct, e),
            _ => e,
        })
}

/// Overlayfs refuses an upper directory that another overlay mount uses: say
/// which one.
fn explain_busy(store: &Store, ct: &str, e: MountError) -> MountError {
    let where_ = match mountinfo::find_source_in_any_namespace(&mount::fsname(store, ct)) {
        Some((pid, at)) => format!(
            "it is mounted at {} in the mount namespace of process {pid}",
            at.display()
        ),
        None => "a lazily unmounted mount of it is still in use".to_string(),
    };
    MountError {
        errno: e.errno,
        text: format!("{e}; {where_}"),
    }
}

/// The `lowerdir+` of an overlay's options, if it is a shared image mount.
fn lower_of(options: &str) -> Option<PathBuf> {
    options
        .split(',')
        .find_map(|o| o.strip_prefix("lowerdir+="))
        .map(PathBuf::from)
        .filter(|p| p.parent().and_then(|d| d.file_name()) == Some("lower".as_ref()))
}

/// `EROFS_SUPER_MAGIC_V1`, the `f_type` of a mounted EROFS.
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;

/// A detached, read-only EROFS mount of the checked, open `image`: from the
/// file itself where the kernel can (6.12+), through a loop device otherwise.
/// The kernel opens it through `/proc/self/fd`, so it mounts the very file
/// that was checked even if the path has been replaced since.
fn mount_image(image: &File) -> Result<OwnedFd, MountError> {
    let forced = std::env::var_os(FORCE_LOOP_ENV).is_some_and(|v| v == "1");
    let by_fd = format!("/proc/self/fd/{}", image.as_raw_fd());
    if !forced {
        let ctx = FsContext::open("erofs")?;
        ctx.set("source", &by_fd)?;
        ctx.flag("ro")?;
        match ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY) {
            Ok(fd) => return Ok(fd),
            // Not a block device: this kernel mounts EROFS from devices only.
            Err(e) if e.errno == Errno::NOTBLK => {}
            Err(e) => return Err(e),
        }
    }
    let (dev, _hold) = sys::loop_attach(image).map_err(|e| MountError {
        errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        text: format!("attaching a loop device to the kernel image: {e}"),
    })?;
    let ctx = FsContext::open("erofs")?;
    ctx.set("source", &dev)?;
    // Read-only superblock: the device is opened for reading only.
    ctx.flag("ro")?;
    ctx.mount(MountAttrFlags::MOUNT_ATTR_RDONLY)
    // `_hold` closes here; the loop device lives as long as the mount.
}
