//! The FUSE backend: one daemon process per mounted container. `mount` starts
//! `vzstore mount --foreground CT MNT` detached (see [`crate::daemon`]); that
//! process runs [`serve`]: it holds `private/<CT>/mount.lock` for its life (a
//! second mount is refused), loads the tree, mounts, reports readiness, serves
//! until unmounted, then saves the container state once and writes the outcome
//! to `private/<CT>/saved` for the `umount` that waits for it.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};

use super::VzFs;
use crate::container::{self, tree::Tree};
use crate::daemon::{self, mountinfo};
use crate::mount::{self, MountBackend, MountOptions};
use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fetch::ObjectSource;
use crate::store::integrity::ObjectChecker;

/// How long `umount` waits for the daemon to save and exit.
const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The FUSE mount backend.
pub struct FuseBackend;

fn saved_file(store: &Store, ct: &str) -> std::path::PathBuf {
    container::private_dir(store, ct).join("saved")
}

impl MountBackend for FuseBackend {
    fn mount(
        &self,
        store: &Store,
        rec: &ContainerRecord,
        mountpoint: &Path,
        opts: MountOptions,
    ) -> Result<()> {
        let exe = std::env::current_exe().at("/proc/self/exe")?;
        let mut cmd = Command::new(exe);
        cmd.arg("--store")
            .arg(store.root())
            .arg("mount")
            .arg("--foreground")
            .args((!opts.passthrough).then_some("--no-passthrough"))
            .arg(&rec.name)
            .arg(mountpoint);
        let log = container::private_dir(store, &rec.name).join("mount.log");
        daemon::spawn_ready(cmd, &log, &rec.name)?;
        Ok(())
    }

    fn umount(&self, store: &Store, ct: &str, mountpoint: &Path) -> Result<()> {
        let saved = saved_file(store, ct);
        mountinfo::unmount(mountpoint)?;
        let start = Instant::now();
        while container::is_mounted(store, ct)? {
            if start.elapsed() > SAVE_TIMEOUT {
                return Err(Error::DaemonTimeout {
                    container: ct.to_string(),
                    seconds: SAVE_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        match fs::read_to_string(&saved) {
            Ok(s) if s.trim() == "ok" => Ok(()),
            Ok(s) if s.starts_with("error: ") => Err(Error::SaveFailed {
                container: ct.to_string(),
                reason: s.trim().trim_start_matches("error: ").to_string(),
            }),
            _ => Err(Error::SaveFailed {
                container: ct.to_string(),
                reason: format!(
                    "the daemon did not report its final save (see {})",
                    container::private_dir(store, ct)
                        .join("mount.log")
                        .display()
                ),
            }),
        }
    }

    fn is_mounted(&self, store: &Store, ct: &str) -> Result<bool> {
        container::is_mounted(store, ct)
    }

    fn stale_at(&self, p: &Path) -> bool {
        mountinfo::is_mounted_at(p, "fuse")
    }
}

/// Serve container `ct` at `mountpoint` in this process until it is unmounted.
/// Reports readiness (or the first error) on stdout, see [`daemon`].
/// `fallback` is where missing objects are fetched from (the remote of a
/// lazily pulled base), if anywhere.
pub fn serve(
    store: &Store,
    ct: &str,
    mountpoint: Option<&Path>,
    opts: MountOptions,
    fallback: Option<Arc<dyn ObjectSource>>,
) -> Result<()> {
    let mut ready = false;
    let r = serve_inner(store, ct, mountpoint, opts, fallback, &mut ready);
    if let Err(e) = &r
        && !ready
    {
        daemon::report_ready(Err(e));
    }
    r
}

fn serve_inner(
    store: &Store,
    ct: &str,
    mountpoint: Option<&Path>,
    opts: MountOptions,
    fallback: Option<Arc<dyn ObjectSource>>,
    ready: &mut bool,
) -> Result<()> {
    let t0 = Instant::now();
    // The lock first: a rebase holds it while it switches the base, so the
    // record read next is the one the private area belongs to.
    let Some(_lock) = container::try_lock_mount(store, ct)? else {
        return Err(Error::AlreadyMounted(ct.to_string()));
    };
    let (rec, manifest) = {
        let db = Catalog::open_read_only(store)?;
        let rec = db
            .container(ct)?
            .ok_or_else(|| Error::ContainerNotFound(ct.to_string()))?;
        let manifest = match db.manifest(&rec.template, rec.version) {
            Err(Error::TemplateNotFound(_)) => {
                return Err(Error::TemplateNotFound(format!(
                    "{} (the base of container {ct}; it was removed)",
                    rec.base_label()
                )));
            }
            r => r?,
        };
        (rec, manifest)
    };
    if rec.backend != Backend::Fuse {
        return Err(Error::MountFailed {
            container: ct.to_string(),
            reason: format!(
                "it uses the {} backend, which no process serves (--foreground is for FUSE containers)",
                rec.backend.name()
            ),
        });
    }
    log::info!("manifest read: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    // A rebase or dedup that died after its commit is finished first.
    container::pending::settle(&container::private_dir(store, ct), &rec)?;
    let mnt = mount::prepare_mountpoint(store, &rec, mountpoint)?;
    let checker = match fallback {
        Some(src) => Arc::new(ObjectChecker::new(store).with_fallback(src)),
        None => Arc::new(ObjectChecker::new(store)),
    };
    let tree = Tree::load(
        store,
        &rec.base_label(),
        manifest,
        container::private_dir(store, ct),
        checker,
    )?;
    log::info!("tree built: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    crate::store::sys::release_free_memory();
    let tree = Arc::new(Mutex::new(tree));
    if let Err(e) = mount::record_mountpoint(store, ct, &mnt) {
        // Not fatal (a full disk): umount finds the mount in mountinfo.
        log::warn!("{e}");
    }
    // The status file `umount` reads: written now, while there may be room, and
    // overwritten in place at the end (which needs no new block).
    let sf = saved_file(store, ct);
    if let Err(e) = fs::write(&sf, format!("running{:120}\n", "")) {
        log::warn!("{}: {e}", sf.display());
    }

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(mount::fsname(store, ct)),
        MountOption::Subtype("vzstore".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::RW,
        MountOption::Exec,
    ];
    config.acl = SessionACL::All;
    // Two request threads: a slow request (a copy-up, checking a large object)
    // does not stall the mount, and every mounted container costs little
    // (1,000 mounts x threads add up).
    config.n_threads = Some(2);
    let session =
        fuser::Session::new(VzFs::new(tree.clone(), opts.passthrough), &mnt, &config).at(&mnt)?;
    log::info!(
        "container {ct} ({}) mounted at {}",
        rec.base_label(),
        mnt.display()
    );
    daemon::report_ready(Ok(&mnt.display().to_string()));
    *ready = true;
    spawn_share_worker(tree.clone(), container::private_dir(store, ct));
    let served = session.run();
    mount::clear_mountpoint(store, ct);
    // The one save at unmount (none when nothing changed since the load); its
    // outcome is what `umount` reports.
    let saved = {
        let mut t = tree.lock().unwrap_or_else(|p| p.into_inner());
        if t.has_unsaved_changes() {
            t.compact()
        } else {
            Ok(())
        }
    };
    let status = match &saved {
        Ok(()) => "ok\n".to_string(),
        Err(e) => {
            log::error!("saving the container state at unmount: {e}");
            format!("error: {e}\n")
        }
    };
    if let Err(e) = write_in_place(&sf, status.as_bytes()) {
        log::error!("{}: {e}", sf.display());
    }
    saved?;
    served.at(&mnt)?;
    Ok(())
}

/// Apply dedup requests (`container::share`) while the container is served:
/// each between FUSE requests, under the tree's lock. The thread ends with
/// the daemon.
fn spawn_share_worker(tree: Arc<Mutex<Tree>>, private: std::path::PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("share".into())
        .spawn(move || {
            loop {
                std::thread::sleep(container::share::POLL);
                let Some(reqs) = container::share::take(&private) else {
                    continue;
                };
                let mut applied = 0;
                for r in &reqs {
                    let mut t = tree.lock().unwrap_or_else(|p| p.into_inner());
                    match t.share_again(r.ino, r.hash, &r.stamp) {
                        Ok(true) => applied += 1,
                        Ok(false) => {}
                        Err(e) => log::warn!("dedup of inode {}: {e:?}", r.ino),
                    }
                }
                log::info!(
                    "dedup: {applied} of {} private files shared again",
                    reqs.len()
                );
                container::share::answer(&private, applied, reqs.len() as u64);
            }
        });
    if let Err(e) = spawned {
        log::warn!("no dedup worker: {e}");
    }
}

/// Overwrite a file's start and cut it to `data`: no new block is needed when
/// the file already holds one (a full disk).
fn write_in_place(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)?;
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)?;
    f.sync_data()
}
