//! Mount daemons: `vzstore mount` starts one process per mounted container. It
//! holds the container's mount lock for its life (so a second mount is refused),
//! loads the tree, mounts, reports readiness, serves until unmounted, and saves the
//! container state on the way out.
//!
//! Without `--foreground` the command re-executes itself in the foreground mode
//! as a detached child and returns once the child reports "ready" on a pipe (or
//! prints the child's error if it fails first). The child logs to
//! `private/<CT>/mount.log`.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, SessionACL};

use crate::fs::VzFs;
use crate::store::Store;
use crate::store::container::{self, tree::Tree};
use crate::store::error::{Error, IoContext, Result};
use crate::store::manifest::Manifest;
use crate::store::meta::{ContainerRecord, MetaDb};

/// How a container is served.
#[derive(Clone, Copy, Debug)]
pub struct MountOptions {
    /// Use FUSE passthrough where the kernel offers it.
    pub passthrough: bool,
}

/// Where a container is mounted, as recorded by its daemon.
fn mountpoint_file(store: &Store, ct: &str) -> PathBuf {
    container::private_dir(store, ct).join("mountpoint")
}

/// The default mount point, `<store>/root/<CT>`.
pub fn default_mountpoint(store: &Store, ct: &str) -> PathBuf {
    store.mount_dir().join(ct)
}

/// Where the container is mounted now, if a daemon serves it.
pub fn current_mountpoint(store: &Store, ct: &str) -> Result<Option<PathBuf>> {
    if !container::is_mounted(store, ct)? {
        return Ok(None);
    }
    let p = mountpoint_file(store, ct);
    Ok(fs::read(&p)
        .ok()
        .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned())))
}

/// Is a vzstore FUSE file system mounted at `p` (per /proc/self/mountinfo)?
/// Callers use it when no daemon holds the container's lock, so such a mount is
/// a dead one ("transport endpoint is not connected"). A stat cannot tell: the
/// kernel may still answer it from its attribute cache.
fn is_stale_mount(p: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.as_os_str().as_encoded_bytes();
    info.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        let fstype = f.get(sep + 1).copied().unwrap_or("");
        fstype.starts_with("fuse") && f.get(4).is_some_and(|m| unescape(m) == want)
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Lazily detach whatever is mounted at `p`.
fn detach(p: &Path) -> Result<()> {
    let out = Command::new("umount").arg("-l").arg(p).output().at(p)?;
    if !out.status.success() {
        return Err(Error::BadDestination {
            path: p.to_path_buf(),
            reason: "could not unmount a stale mount here",
        });
    }
    Ok(())
}

/// Checks common to both mount modes; returns the mount point to use.
fn prepare(
    store: &Store,
    ct: &str,
    mountpoint: Option<&Path>,
) -> Result<(PathBuf, ContainerRecord, Manifest)> {
    let db = MetaDb::open(store)?;
    let rec = db
        .container(ct)?
        .ok_or_else(|| Error::InUse(format!("container {ct} does not exist")))?;
    let manifest = match db.manifest(&rec.template, rec.version) {
        Err(Error::TemplateNotFound(_)) => {
            return Err(Error::TemplateNotFound(format!(
                "{} (the base of container {ct}; it was removed)",
                rec.base_label()
            )));
        }
        r => r?,
    };
    drop(db);
    if container::is_mounted(store, ct)? {
        return Err(Error::InUse(format!("container {ct} is already mounted")));
    }
    let mnt = match mountpoint {
        Some(p) => std::path::absolute(p).at(p)?,
        None => {
            let p = default_mountpoint(store, ct);
            if !p.exists() && !is_stale_mount(&p) {
                fs::create_dir_all(&p).at(&p)?;
            }
            p
        }
    };
    if is_stale_mount(&mnt) {
        log::warn!(
            "{}: cleaning up a stale mount left by a crashed daemon",
            mnt.display()
        );
        detach(&mnt)?;
    }
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
    Ok((mnt, rec, manifest))
}

/// Mount in the background: start a detached foreground daemon and wait until it
/// is ready. Returns the mount point.
pub fn mount_background(
    store: &Store,
    ct: &str,
    mountpoint: Option<&Path>,
    opts: MountOptions,
) -> Result<PathBuf> {
    // The daemon does every check itself and reports the first failure on the
    // pipe, so the operator sees the same message as in the foreground.
    let exe = std::env::current_exe().at("/proc/self/exe")?;
    let log_path = container::private_dir(store, ct).join("mount.log");
    // No private area means no such container: the daemon says so on the pipe.
    let log = if container::private_dir(store, ct).is_dir() {
        Stdio::from(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .at(&log_path)?,
        )
    } else {
        Stdio::null()
    };
    let mut child = Command::new(exe)
        .arg("--store")
        .arg(store.root())
        .arg("mount")
        .arg("--foreground")
        .args((!opts.passthrough).then_some("--no-passthrough"))
        .arg(ct)
        .args(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .at("vzstore mount daemon")?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error::InUse("no pipe to the mount daemon".into()))?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .at("mount daemon pipe")?;
    if let Some(mnt) = line.trim_end_matches('\n').strip_prefix("ready ") {
        return Ok(PathBuf::from(mnt));
    }
    let _ = child.wait();
    let msg = line
        .trim()
        .strip_prefix("error: ")
        .unwrap_or(line.trim())
        .to_string();
    Err(Error::InUse(if msg.is_empty() {
        format!("mount daemon for {ct} failed; see {}", log_path.display())
    } else {
        msg
    }))
}

/// Serve the container in this process until it is unmounted. Writes "ready" (or
/// "error: ...") as one line on stdout once the mount is up (or has failed).
pub fn serve(store: &Store, ct: &str, mountpoint: Option<&Path>, opts: MountOptions) -> Result<()> {
    let r = serve_inner(store, ct, mountpoint, opts);
    if let Err(e) = &r {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "error: {e}");
        let _ = out.flush();
    }
    r
}

fn serve_inner(
    store: &Store,
    ct: &str,
    mountpoint: Option<&Path>,
    opts: MountOptions,
) -> Result<()> {
    let t0 = Instant::now();
    let (mnt, rec, manifest) = prepare(store, ct, mountpoint)?;
    log::info!("manifest read: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    let _lock = container::try_lock_mount(store, ct)?
        .ok_or_else(|| Error::InUse(format!("container {ct} is already mounted")))?;
    let tree = Tree::load(store, manifest, container::private_dir(store, ct))?;
    log::info!("tree built: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    crate::store::sys::release_free_memory();
    let tree = Arc::new(Mutex::new(tree));
    let mpf = mountpoint_file(store, ct);
    fs::write(&mpf, mnt.as_os_str().as_encoded_bytes()).at(&mpf)?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(format!("vzstore:{ct}")),
        MountOption::Subtype("vzstore".into()),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::RW,
        MountOption::Exec,
    ];
    config.acl = SessionACL::All;
    // Two request threads: a slow request (a copy-up) does not stall the mount,
    // and every mounted container costs little (1,000 mounts x threads add up).
    config.n_threads = Some(2);
    let session =
        fuser::Session::new(VzFs::new(tree.clone(), opts.passthrough), &mnt, &config).at(&mnt)?;
    log::info!(
        "container {ct} ({}) mounted at {}",
        rec.base_label(),
        mnt.display()
    );
    {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "ready {}", mnt.display());
        let _ = out.flush();
    }
    let r = session.run();
    let _ = fs::remove_file(&mpf);
    tree.lock().unwrap_or_else(|p| p.into_inner()).compact()?;
    r.at(&mnt)?;
    Ok(())
}

/// Unmount a container and wait for its daemon to save its state and exit. A stale
/// mount (daemon gone) is cleaned up.
pub fn umount(store: &Store, ct: &str) -> Result<PathBuf> {
    let default = default_mountpoint(store, ct);
    let Some(mnt) = current_mountpoint(store, ct)? else {
        if is_stale_mount(&default) {
            detach(&default)?;
            return Ok(default);
        }
        return Err(Error::InUse(format!("container {ct} is not mounted")));
    };
    let out = Command::new("umount").arg(&mnt).output().at(&mnt)?;
    if !out.status.success() {
        return Err(Error::InUse(format!(
            "umount {}: {}",
            mnt.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let start = Instant::now();
    while container::is_mounted(store, ct)? {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(Error::InUse(format!(
                "the mount daemon of {ct} did not exit within 60 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(mnt)
}
