//! Fault injection: I/O errors at each step that writes (failpoints, test builds
//! only), a real full disk (ext4 on a loop device), and SIGKILL of the mount
//! daemon and of ingest. Each checks the error reaches the caller with the right
//! errno or message and that nothing half-done stays behind (invariants 5, 7).
//!
//! `VZSTORE_LONG_FAULTS=1` runs the kill -9 loops 100 rounds instead of 5.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

const ENOSPC_MSG: &str = "No space left on device";
const EIO_MSG: &str = "Input/output error";

/// A small template tree; `seed` makes its file contents unique. Holds files
/// below and above the 1 MiB small-file limit of ingest (both read paths).
fn small_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("emptydir")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/hostname"), format!("host-{seed}\n")).unwrap();
    rustix::fs::setxattr(
        root.join("etc/hostname"),
        "user.note",
        b"note",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    fs::write(root.join("etc/passwd"), noise(seed * 10 + 1, 3_000)).unwrap();
    fs::write(root.join("usr/bin/tool"), noise(seed * 10 + 2, 20_000)).unwrap();
    fs::write(root.join("usr/bin/big"), noise(seed * 10 + 3, 3 << 19)).unwrap();
    std::os::unix::fs::symlink("tool", root.join("usr/bin/tool-link")).unwrap();
}

/// Ingest a small tree as template `t` into `store` and create container `c`.
fn add_container(store: &Path, scratch: &Path) -> PathBuf {
    let src = scratch.join("ct-src");
    small_tree(&src, 1);
    vz_ok(store, &["ingest", src.to_str().unwrap(), "--name", "t"]);
    vz_ok(store, &["create", "c", "--template", "t"]);
    src
}

fn container_store() -> (tempfile::TempDir, PathBuf) {
    let (t, store) = new_store();
    add_container(&store, t.path());
    (t, store)
}

/// A fresh store on its own 64 MiB ext4 file system (unmounted on drop).
fn store_on_small_fs() -> (LoopFs, PathBuf) {
    let lfs = LoopFs::new(64);
    let store = lfs.path.join("store");
    vz_ok(&store, &["init"]);
    (lfs, store)
}

/// `vzstore verify` must exit 0 and call the store clean.
fn verify_clean(store: &Path, when: &str) {
    let out = vz(store, &["verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("-> clean"),
        "{when}: verify failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Entries of a directory (names), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn errno_of<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what} unexpectedly succeeded: {v:?}"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: error without errno: {e}")),
    }
}

fn rounds() -> usize {
    if std::env::var_os("VZSTORE_LONG_FAULTS").is_some_and(|v| v == "1") {
        100
    } else {
        5
    }
}

/// Deterministic content of byte `off..off+len` of a test stream.
fn pattern(off: u64, len: usize) -> Vec<u8> {
    (off..off + len as u64)
        .map(|i| ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8) ^ ((i >> 12) as u8))
        .collect()
}

#[test]
fn journal_full_changes_fail_and_leave_no_trace() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (_t, store) = container_store();
    let m = Mounted::with_env(
        &store,
        "c",
        &[("FAILPOINTS", "journal-append=return(ENOSPC)")],
    );
    let p = m.path.clone();
    let data = store.join("private/c/data");
    let before = snapshot(&p);
    type Op<'a> = Box<dyn Fn() -> std::io::Result<()> + 'a>;
    let ops: Vec<(&str, Op)> = vec![
        ("mkdir", Box::new(|| fs::create_dir(p.join("newdir")))),
        (
            "create",
            Box::new(|| {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p.join("etc/newfile"))
                    .map(drop)
            }),
        ),
        (
            "symlink",
            Box::new(|| std::os::unix::fs::symlink("target", p.join("etc/sl"))),
        ),
        (
            "rename",
            Box::new(|| fs::rename(p.join("etc/hostname"), p.join("etc/hostname2"))),
        ),
        (
            "rename over a file",
            Box::new(|| fs::rename(p.join("etc/hostname"), p.join("etc/passwd"))),
        ),
        (
            "rename a dir",
            Box::new(|| fs::rename(p.join("usr/bin"), p.join("emptydir/bin"))),
        ),
        (
            "link",
            Box::new(|| fs::hard_link(p.join("etc/hostname"), p.join("etc/hl"))),
        ),
        ("unlink", Box::new(|| fs::remove_file(p.join("etc/passwd")))),
        ("rmdir", Box::new(|| fs::remove_dir(p.join("emptydir")))),
        (
            "setxattr",
            Box::new(|| {
                rustix::fs::setxattr(
                    p.join("etc/hostname"),
                    "user.x",
                    b"1",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(std::io::Error::from)
            }),
        ),
        (
            "chmod",
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p.join("etc/hostname"), fs::Permissions::from_mode(0o600))
            }),
        ),
    ];
    for (name, op) in &ops {
        assert_eq!(errno_of(name, op()), libc::ENOSPC, "{name}");
        assert_eq!(
            snapshot(&p),
            before,
            "a failed {name} changed the live tree"
        );
        assert_eq!(
            entries(&data),
            Vec::<String>::new(),
            "a failed {name} left a data file"
        );
    }
    m.umount();
    let m = Mounted::new(&store, "c");
    assert_eq!(
        snapshot(&m.path),
        before,
        "failed changes are visible after remount"
    );
    // Without the failpoint the same changes work (the mount is not wedged).
    fs::create_dir(m.path.join("newdir")).unwrap();
    m.umount();
    verify_clean(&store, "after the journal-full mount");
}

#[test]
fn umount_whose_final_save_fails_keeps_the_journal() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (_t, store) = container_store();
    let private = store.join("private/c");
    let m = Mounted::with_env(
        &store,
        "c",
        &[("FAILPOINTS", "snapshot-write=return(ENOSPC)")],
    );
    fs::create_dir(m.path.join("newdir")).unwrap();
    fs::write(m.path.join("etc/hostname"), b"changed\n").unwrap();
    let live = snapshot(&m.path);
    let err = m.umount_err();
    assert!(
        err.contains("container c: saving its state at unmount failed")
            && err.contains(ENOSPC_MSG)
            && err.contains("state.new"),
        "umount does not say what failed: {err}"
    );
    assert!(
        !private.join("state.new").exists(),
        "a half-written snapshot stayed behind: {:?}",
        entries(&private)
    );
    // The daemon is gone: a second umount says so, mount works again.
    let err = vz_err(&store, &["umount", "c"]);
    assert!(err.contains("not mounted"), "{err}");
    let m = Mounted::new(&store, "c");
    assert!(
        m.path.join("newdir").is_dir(),
        "the journaled mkdir is lost"
    );
    assert_eq!(snapshot(&m.path), live);
    m.umount();
    // Loadable again from the snapshot written by that mount.
    let m = Mounted::new(&store, "c");
    assert_eq!(snapshot(&m.path), live);
    assert_eq!(fs::read(m.path.join("etc/hostname")).unwrap(), b"changed\n");
    m.umount();
    assert!(!private.join("state.new").exists());
    verify_clean(&store, "after the failed save");
}

#[test]
fn ingest_faults_change_nothing() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let mut seed = 100;
    let mut version = 0;
    for fp in [
        "ingest-stage",
        "ingest-read",
        "publish-sync",
        "publish-rename",
    ] {
        for (code, msg) in [("EIO", EIO_MSG), ("ENOSPC", ENOSPC_MSG)] {
            seed += 1;
            let what = format!("{fp}={code}");
            let src = t.path().join(format!("src-{fp}-{code}"));
            small_tree(&src, seed);
            let templates = vz_ok(&store, &["templates"]);
            let objects = objects_state(&store);
            let out = vz_env(
                &store,
                &[("FAILPOINTS", &format!("{fp}=return({code})"))],
                &["ingest", src.to_str().unwrap(), "--name", "t"],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what}: ingest succeeded");
            assert!(
                err.contains(&format!("ingest of {} failed", src.display())) && err.contains(msg),
                "{what}: unclear error: {err}"
            );
            assert_eq!(
                vz_ok(&store, &["templates"]),
                templates,
                "{what}: the template list changed"
            );
            assert!(objects_state(&store) == objects, "{what}: objects changed");
            assert_eq!(
                entries(&store.join("tmp")),
                Vec::<String>::new(),
                "{what}: the session stayed behind"
            );
            verify_clean(&store, &what);
            vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "t"]);
            version += 1;
            let list = vz_ok(&store, &["templates"]);
            assert!(
                list.contains(&format!("t@{version}")) || list.contains(&format!("{version}")),
                "{what}: {list}"
            );
            let e = t.path().join(format!("export-{fp}-{code}"));
            vz_ok(
                &store,
                &["export", &format!("t@{version}"), e.to_str().unwrap()],
            );
            assert_same_tree(&src, &e);
        }
    }
    verify_clean(&store, "at the end");
}

#[test]
fn copy_up_failure_leaves_the_shared_file() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (t, store) = container_store();
    let original = fs::read(t.path().join("ct-src/usr/bin/tool")).unwrap();
    let data = store.join("private/c/data");
    let m = Mounted::with_env(&store, "c", &[("FAILPOINTS", "copy-up=return(EIO)")]);
    let f = m.path.join("usr/bin/tool");
    let before = snapshot(&m.path);
    let r = OpenOptions::new().write(true).open(&f);
    assert_eq!(errno_of("open for writing", r), libc::EIO);
    let r = OpenOptions::new().read(true).append(true).open(&f);
    assert_eq!(errno_of("open for appending", r), libc::EIO);
    assert_eq!(fs::read(&f).unwrap(), original);
    assert_eq!(entries(&data), Vec::<String>::new(), "copy-up left a file");
    assert_eq!(snapshot(&m.path), before);
    m.umount();
    let m = Mounted::new(&store, "c");
    assert_eq!(fs::read(m.path.join("usr/bin/tool")).unwrap(), original);
    assert_eq!(snapshot(&m.path), before);
    m.umount();
    assert_eq!(entries(&data), Vec::<String>::new());
    verify_clean(&store, "after the failed copy-up");
}

#[test]
fn disk_full_ingest_fails_cleanly() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (lfs, store) = store_on_small_fs();
    let t = tempfile::tempdir().unwrap();
    // 96 MiB of distinct content into a 64 MiB file system.
    let big = t.path().join("big");
    fs::create_dir(&big).unwrap();
    for i in 0..12 {
        fs::write(big.join(format!("f{i}")), noise(1000 + i, 8 << 20)).unwrap();
    }
    fs::write(big.join("small"), b"small").unwrap();
    let free = lfs.free();
    let out = vz(&store, &["ingest", big.to_str().unwrap(), "--name", "big"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ingest into a full disk succeeded");
    assert!(
        err.contains(&format!("ingest of {} failed", big.display())) && err.contains(ENOSPC_MSG),
        "unclear error: {err}"
    );
    assert!(!vz_ok(&store, &["templates"]).contains("big"));
    assert_eq!(entries(&store.join("tmp")), Vec::<String>::new());
    assert!(
        lfs.free() + (1 << 20) >= free,
        "the failed ingest keeps space: {} of {free} bytes free",
        lfs.free()
    );
    verify_clean(&store, "after the disk-full ingest");
    let small = t.path().join("small");
    small_tree(&small, 7);
    vz_ok(
        &store,
        &["ingest", small.to_str().unwrap(), "--name", "small"],
    );
    let e = t.path().join("export");
    vz_ok(&store, &["export", "small", e.to_str().unwrap()]);
    assert_same_tree(&small, &e);
    verify_clean(&store, "after the smaller ingest");
}

#[test]
fn disk_full_in_a_container() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (_lfs, store) = store_on_small_fs();
    let t = tempfile::tempdir().unwrap();
    add_container(&store, t.path());
    let m = Mounted::new(&store, "c");
    let keep = noise(77, 100_000);
    fs::write(m.path.join("etc/keep"), &keep).unwrap();
    fs::File::open(m.path.join("etc/keep"))
        .unwrap()
        .sync_all()
        .unwrap();
    let fill = m.path.join("fill");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&fill)
        .unwrap();
    let chunk = 1 << 20;
    let mut synced = 0u64;
    let err = loop {
        let r = f
            .write_all_at(&pattern(synced, chunk), synced)
            .and_then(|()| f.sync_data());
        match r {
            Ok(()) => synced += chunk as u64,
            Err(e) => break e,
        }
        assert!(synced < 128 << 20, "wrote {synced} bytes into a 64 MiB fs");
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(synced > 16 << 20, "only {synced} bytes fit");
    drop(f);
    // The disk is still full. Unmounting must not lose what was written; if
    // the final save fails it must say so.
    let out = vz(&store, &["umount", "c"]);
    let mut m = m;
    m.name.clear();
    eprintln!(
        "umount on a full disk: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(ENOSPC_MSG), "unclear umount error: {err}");
    }
    let m = Mounted::new(&store, "c");
    assert_eq!(fs::read(m.path.join("etc/keep")).unwrap(), keep);
    let got = fs::read(m.path.join("fill")).unwrap();
    assert!(
        got.len() as u64 >= synced,
        "{} of {synced} synced bytes survived",
        got.len()
    );
    assert!(got == pattern(0, got.len()), "fill holds wrong bytes");
    // Free the space again: the container works normally.
    fs::remove_file(m.path.join("fill")).unwrap();
    fs::create_dir(m.path.join("after")).unwrap();
    m.umount();
    let m = Mounted::new(&store, "c");
    assert!(m.path.join("after").is_dir());
    assert!(!m.path.join("fill").exists());
    m.umount();
    verify_clean(&store, "after the full container");
}

/// Pid of the mount daemon serving container `ct` of `store`.
fn daemon_pid(store: &Path, ct: &str) -> Option<i32> {
    let store = store.to_str().unwrap();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let has = |s: &str| args.contains(&s.as_bytes());
        if has("mount") && has("--foreground") && has(ct) && has(store) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn kill_mount_daemon_during_fsynced_writes() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (_t, store) = container_store();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut expected = 0u64; // fsynced bytes of root/log so far
    for round in 0..rounds() {
        let m = Mounted::new(&store, "c");
        let log = m.path.join("log");
        let have = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        assert!(
            have >= expected,
            "round {round}: {have} of {expected} fsynced bytes survived"
        );
        let got = fs::read(&log).unwrap_or_default();
        assert!(
            got == pattern(0, got.len()),
            "round {round}: log holds wrong bytes"
        );
        let pid = daemon_pid(&store, "c").expect("the mount daemon's pid");
        let acked = Arc::new(AtomicU64::new(have));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (acked, stop, log) = (acked.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || {
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&log)
                    .unwrap();
                let mut off = have;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let len = 1 + (n * 7919 % 20_000) as usize;
                    if f.write_all_at(&pattern(off, len), off)
                        .and_then(|()| f.sync_data())
                        .is_err()
                    {
                        break;
                    }
                    off += len as u64;
                    acked.store(off, Ordering::SeqCst);
                }
            })
        };
        // Let some writes land, then kill at a pseudo-random moment.
        let start = Instant::now();
        while acked.load(Ordering::SeqCst) == have {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no write completes"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 60));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let killed_at = acked.load(Ordering::SeqCst);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        expected = acked.load(Ordering::SeqCst);
        assert!(expected >= killed_at);
        // Clean up the stale mount of the dead daemon.
        m.umount();
        verify_clean(&store, &format!("round {round}"));
    }
    let m = Mounted::new(&store, "c");
    let got = fs::read(m.path.join("log")).unwrap();
    assert!(
        got.len() as u64 >= expected,
        "{} of {expected} bytes",
        got.len()
    );
    assert!(got == pattern(0, got.len()), "log holds wrong bytes");
    m.umount();
    verify_clean(&store, "at the end");
}

fn ingest_tree(root: &Path, seed: u64) {
    for d in 0..10 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            fs::write(
                dir.join(format!("f{f}")),
                noise(seed * 10_000 + d * 100 + f, 2_000 + (f as usize * 3_001)),
            )
            .unwrap();
        }
    }
    fs::write(root.join("big"), noise(seed + 0xb16, 12 << 20)).unwrap();
}

/// True once an ingest session has staged an object file.
fn staging_started(store: &Path) -> bool {
    fs::read_dir(store.join("tmp")).is_ok_and(|rd| {
        rd.flatten().any(|s| {
            fs::read_dir(s.path()).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("obj-"))
            })
        })
    })
}

#[test]
#[allow(clippy::zombie_processes)] // every path waits: a finished child, or kill + wait
fn kill_ingest_midway() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    let (t, store) = new_store();
    let srcs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = t.path().join(format!("src{i}"));
            ingest_tree(&p, 50 + i);
            p
        })
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut killed = 0;
    for round in 0..rounds() {
        let src = &srcs[round % srcs.len()];
        let name = format!("t{}", round % srcs.len());
        let mut child = Command::new(bin())
            .arg("--store")
            .arg(&store)
            .args(["ingest", src.to_str().unwrap(), "--name", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let mut done = false;
        while !staging_started(&store) {
            if child.try_wait().unwrap().is_some() {
                done = true;
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_micros(200));
        }
        if !done {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            std::thread::sleep(Duration::from_millis(seed % 30));
            done = child.try_wait().unwrap().is_some();
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed += !done as u32;
        }
        verify_clean(&store, &format!("round {round}"));
    }
    assert!(killed > 0, "no ingest was killed mid-way");
    vz_ok(&store, &["gc"]);
    let out = vz_ok(&store, &["verify"]);
    assert!(
        out.contains("-> clean")
            && out.contains("0 unreferenced objects, 0 unused images, 0 crashed sessions"),
        "{out}"
    );
    // The store still takes the tree.
    vz_ok(
        &store,
        &["ingest", srcs[0].to_str().unwrap(), "--name", "final"],
    );
    let e = t.path().join("e");
    vz_ok(&store, &["export", "final", e.to_str().unwrap()]);
    assert_same_tree(&srcs[0], &e);
}

/// A completely full disk (filled from outside the container). Unmounting an
/// unchanged container must work or say why not; a container whose journal
/// holds changes (its daemon was killed) must still mount.
#[test]
fn full_disk_umount_and_remount() {
    if !require_root("FUSE mounts, loop devices, signals to root daemons") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (lfs, store) = store_on_small_fs();
    let t = tempfile::tempdir().unwrap();
    add_container(&store, t.path());
    Mounted::new(&store, "c").umount(); // creates the mount point
    // Disk full: every read-only command works, writing ones fail cleanly
    // (before, librocksdb's assertion aborted every command with rc 134).
    let filler = fill_up(&lfs.path);
    for args in [&["templates"][..], &["list"], &["report"], &["verify"]] {
        vz_ok(&store, args);
    }
    let exp = t.path().join("exp");
    vz_ok(&store, &["export", "t", exp.to_str().unwrap()]);
    for args in [
        &["create", "c2", "--template", "t"][..],
        &["templates", "rm", "t"],
        &["ingest", exp.to_str().unwrap(), "--name", "t2"],
    ] {
        let out = vz(&store, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} on a full disk: {err}");
        assert!(
            err.contains(ENOSPC_MSG) || err.contains("is used by container"),
            "{args:?}: {err}"
        );
    }
    // Nothing changed, so umount has nothing to save.
    let m = Mounted::new(&store, "c");
    let out = vz(&store, &["umount", "c"]);
    let mut m = m;
    m.name.clear();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains(ENOSPC_MSG),
        "umount of an unchanged container on a full disk: {err}"
    );
    fs::remove_file(&filler).unwrap();
    // A change in the journal only (the daemon dies), then the disk fills up.
    let m = Mounted::new(&store, "c");
    fs::create_dir(m.path.join("made")).unwrap();
    let pid = daemon_pid(&store, "c").expect("daemon pid");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    m.umount(); // the stale mount
    let filler = fill_up(&lfs.path);
    let m = Mounted::new(&store, "c");
    assert!(m.path.join("made").is_dir());
    fs::remove_file(filler).unwrap();
    m.umount();
    verify_clean(&store, "after the full disk");
}
