//! Mount backends: how a container's root is served. The container's record says
//! which backend serves it ([`Backend`]); everything here dispatches on it, so
//! `mount`, `umount` and `list` behave the same for every backend.
//!
//! A backend implements [`MountBackend`]: [`fuse`] (a daemon per mounted
//! container serving its inode tree) and [`kernel`] (an EROFS image of the
//! template under overlayfs, no daemon).

pub mod fuse;
pub mod kernel;

use std::fs;
use std::path::{Path, PathBuf};

use crate::container;
use crate::daemon::mountinfo;
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, IoContext, Result};

/// How a container is served.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// FUSE: use passthrough where the kernel offers it.
    pub passthrough: bool,
}

/// One way of serving container roots. Implementations are stateless; all
/// state lives in the store and the kernel.
pub trait MountBackend: Sync {
    /// Mount `rec` at `mountpoint` (an existing empty directory, no stale mount)
    /// and return once it serves. Fails if it is mounted already.
    fn mount(
        &self,
        store: &Store,
        rec: &ContainerRecord,
        mountpoint: &Path,
        opts: MountOptions,
    ) -> Result<()>;
    /// Unmount the container mounted at `mountpoint`, and return once its state
    /// is saved. An error means the unmount or the save failed.
    fn umount(&self, store: &Store, ct: &str, mountpoint: &Path) -> Result<()>;
    /// Whether the container is served now.
    fn is_mounted(&self, store: &Store, ct: &str) -> Result<bool>;
    /// Whether a mount at `p` is this backend's and dead (a FUSE daemon that
    /// crashed leaves one): it is detached before mounting there again.
    fn stale_at(&self, p: &Path) -> bool;
}

/// The implementation of a backend.
pub fn backend(b: Backend) -> &'static dyn MountBackend {
    match b {
        Backend::Fuse => &fuse::serve::FuseBackend,
        Backend::Kernel => &kernel::KernelBackend,
    }
}

/// The source name a container's mount shows in mountinfo: the store and the
/// container, so that no store ever takes another store's mount for its own.
pub(crate) fn fsname(store: &Store, ct: &str) -> String {
    format!("vzstore:{}/{ct}", store.root().display())
}

/// Where a container's mount point is recorded while it is mounted.
fn mountpoint_file(store: &Store, ct: &str) -> PathBuf {
    container::private_dir(store, ct).join("mountpoint")
}

/// The default mount point, `<store>/root/<CT>`.
pub fn default_mountpoint(store: &Store, ct: &str) -> PathBuf {
    store.mount_dir().join(ct)
}

/// Record where a container is mounted (by whoever serves it).
pub(crate) fn record_mountpoint(store: &Store, ct: &str, mnt: &Path) -> Result<()> {
    let p = mountpoint_file(store, ct);
    let r = fs::write(&p, mnt.as_os_str().as_encoded_bytes()).at(&p);
    if r.is_err() {
        let _ = fs::remove_file(&p); // no half-written record
    }
    r
}

/// Forget where a container was mounted.
pub(crate) fn clear_mountpoint(store: &Store, ct: &str) {
    let _ = fs::remove_file(mountpoint_file(store, ct));
}

/// The container record, from one short catalog open.
pub fn record(store: &Store, ct: &str) -> Result<ContainerRecord> {
    Catalog::open_read_only(store)?
        .container(ct)?
        .ok_or_else(|| Error::ContainerNotFound(ct.to_string()))
}

/// Whether the container is served now, by whichever backend it uses.
pub fn is_mounted(store: &Store, rec: &ContainerRecord) -> Result<bool> {
    backend(rec.backend).is_mounted(store, &rec.name)
}

/// Where the container is mounted now, if it is.
pub fn current_mountpoint(store: &Store, rec: &ContainerRecord) -> Result<Option<PathBuf>> {
    if !is_mounted(store, rec)? {
        return Ok(None);
    }
    let p = mountpoint_file(store, &rec.name);
    match fs::read(&p) {
        Ok(b) if !b.is_empty() => Ok(Some(PathBuf::from(
            String::from_utf8_lossy(&b).into_owned(),
        ))),
        // Not recorded (a full disk at mount): the kernel knows.
        _ => Ok(mountinfo::find_source(&fsname(store, &rec.name))),
    }
}

/// The mount point to use: the one given, or the default (created). A stale
/// mount left there by a crashed daemon is detached; the result must be an empty
/// directory.
pub fn prepare_mountpoint(
    store: &Store,
    rec: &ContainerRecord,
    given: Option<&Path>,
) -> Result<PathBuf> {
    prepare_mountpoint_in(store, rec, given, &mountinfo::table())
}

/// [`prepare_mountpoint`] with the mount table read already.
fn prepare_mountpoint_in(
    store: &Store,
    rec: &ContainerRecord,
    given: Option<&Path>,
    mounts: &[mountinfo::Mount],
) -> Result<PathBuf> {
    let b = backend(rec.backend);
    let mnt = match given {
        Some(p) => std::path::absolute(p).at(p)?,
        None => {
            let p = default_mountpoint(store, &rec.name);
            if !p.exists() && !b.stale_at(&p) {
                fs::create_dir_all(&p).at(&p)?;
            }
            p
        }
    };
    if b.stale_at(&mnt) {
        log::warn!(
            "{}: cleaning up a stale mount left by a crashed daemon",
            mnt.display()
        );
        mountinfo::detach(&mnt)?;
    }
    let mnt = check_mount_point_place(store, &mnt, mounts)?;
    let meta = fs::metadata(&mnt).at(&mnt)?;
    if !meta.is_dir() {
        return Err(Error::BadDestination {
            path: mnt,
            reason: "is not a directory",
        });
    }
    if fs::read_dir(&mnt).at(&mnt)?.next().is_some() {
        return Err(Error::BadDestination {
            path: mnt,
            reason: "is not empty",
        });
    }
    Ok(mnt)
}

/// A mount point must not be inside the store (except `root/<name>`) nor
/// inside a mounted container, whose processes could swap what the path
/// means (mounts carry suid). Returns the resolved path to mount on.
fn check_mount_point_place(
    store: &Store,
    mnt: &Path,
    mounts: &[mountinfo::Mount],
) -> Result<PathBuf> {
    let real = fs::canonicalize(mnt).at(mnt)?;
    for m in mounts {
        let inside = |p: &Path| p != m.point && p.starts_with(&m.point);
        if m.source.starts_with(b"vzstore:") && (inside(mnt) || inside(&real)) {
            return Err(Error::BadDestination {
                path: mnt.to_path_buf(),
                reason: "is inside a mounted container's root; mount containers outside each other",
            });
        }
    }
    if let Ok(rel) = real.strip_prefix(store.root())
        && rel.parent() != Some(Path::new("root"))
    {
        return Err(Error::BadDestination {
            path: mnt.to_path_buf(),
            reason: "is inside the store; use STORE/root/<name> or a directory outside the store",
        });
    }
    Ok(real)
}

/// Mount container `ct` (at `given`, or its default mount point) with the
/// backend its record names; returns the mount point.
pub fn mount(store: &Store, ct: &str, given: Option<&Path>, opts: MountOptions) -> Result<PathBuf> {
    let rec = record(store, ct)?;
    // One read of the mount table (it grows with every mounted container).
    let mounts = mountinfo::table();
    let mounted = match rec.backend {
        Backend::Kernel => {
            let ours = fsname(store, ct);
            mounts.iter().any(|m| m.source == ours.as_bytes())
        }
        Backend::Fuse => is_mounted(store, &rec)?,
    };
    if mounted {
        return Err(Error::AlreadyMounted(ct.to_string()));
    }
    let mnt = prepare_mountpoint_in(store, &rec, given, &mounts)?;
    backend(rec.backend).mount(store, &rec, &mnt, opts)?;
    Ok(mnt)
}

/// Whether any mount of the container exists, in any mount namespace (for
/// commands that change a container's area while it is not held by a
/// daemon: rebase, commit, dedup). Unlike [`is_mounted`] it does not take a
/// FUSE container's lock as the sign of a mount: the caller may hold it.
pub fn is_served(store: &Store, rec: &ContainerRecord) -> Result<bool> {
    let name = fsname(store, &rec.name);
    Ok(mountinfo::find_source(&name).is_some()
        || mountinfo::find_source_in_any_namespace(&name).is_some())
}

/// Remove container `ct` (refused while it is mounted, by either backend).
pub fn destroy(store: &Store, ct: &str) -> Result<()> {
    container::destroy(store, ct, &|rec| match rec.backend {
        // The mount lock that destroy holds is the daemon's: it would have
        // been refused while one serves the container.
        Backend::Fuse => Ok(false),
        // Also in other mount namespaces: the kernel serves it there.
        Backend::Kernel => Ok(is_mounted(store, rec)?
            || mountinfo::find_source_in_any_namespace(&fsname(store, ct)).is_some()),
    })
}

/// Unmount container `ct` and wait until its state is saved; a stale mount of a
/// crashed daemon at the default mount point is cleaned up. Returns the mount
/// point.
pub fn umount(store: &Store, ct: &str) -> Result<PathBuf> {
    let rec = record(store, ct)?;
    let b = backend(rec.backend);
    let Some(mnt) = current_mountpoint(store, &rec)? else {
        let default = default_mountpoint(store, ct);
        if b.stale_at(&default) {
            mountinfo::detach(&default)?;
            return Ok(default);
        }
        return Err(Error::NotMounted(ct.to_string()));
    };
    // Unmount only our own mount: something mounted on top of it stays.
    let ours = fsname(store, ct);
    if let Some(top) = mountinfo::top_source_at(&mnt)
        && top != ours.as_bytes()
    {
        return Err(Error::UmountFailed {
            path: mnt,
            reason: format!(
                "another file system ({}) is mounted on top of the container; unmount it first",
                String::from_utf8_lossy(&top)
            ),
        });
    }
    b.umount(store, ct, &mnt)?;
    Ok(mnt)
}
