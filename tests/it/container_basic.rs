//! Containers: create, list, mount, read back, persist, destroy; bad input.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::common::*;

fn mount_serves_template_identically(b: Backend) {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, src) = fixture_store();
    let out = vz_ok(
        &store,
        &["create", "c1", "--template", "fx", "--backend", b.name()],
    );
    assert!(out.contains("created container c1 from fx@1"), "{out}");
    let private = store.join("private/c1");
    let du = du_b1(&private);
    assert!(du <= 64 << 10, "a new container uses {du} bytes");
    let m = Mounted::new(&store, "c1");
    // Invariant 6 through the mount: bytes and all metadata.
    assert_same_tree(&src, &m.path);
    let list = vz_ok(&store, &["list"]);
    assert!(
        list.contains("c1") && list.contains("fx@1") && list.contains("yes"),
        "{list}"
    );
    m.umount();
    assert!(vz_ok(&store, &["list"]).contains("no"));
}
both_backends!(mount_serves_template_identically);

fn changes_persist_across_remount(b: Backend) {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(
        &store,
        &["create", "c1", "--template", "fx", "--backend", b.name()],
    );
    let m = Mounted::new(&store, "c1");
    let p = &m.path;
    fs::write(p.join("etc/hostname"), b"changed\n").unwrap();
    fs::write(p.join("root/new"), b"new file").unwrap();
    fs::create_dir(p.join("root/dir")).unwrap();
    fs::rename(p.join("usr/bin"), p.join("usr/bin2")).unwrap();
    fs::remove_file(p.join("etc/owned")).unwrap();
    fs::hard_link(p.join("root/new"), p.join("root/new-link")).unwrap();
    std::os::unix::fs::symlink("target", p.join("root/sl")).unwrap();
    let before = snapshot(p);
    m.umount();
    let m = Mounted::new(&store, "c1");
    assert_eq!(snapshot(&m.path), before);
    assert_eq!(fs::read(m.path.join("etc/hostname")).unwrap(), b"changed\n");
    assert!(!m.path.join("etc/owned").exists());
    assert_eq!(fs::metadata(m.path.join("root/new")).unwrap().nlink(), 2);
    m.umount();
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}
both_backends!(changes_persist_across_remount);

#[test]
fn bad_input_is_refused() {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (t, store, _src) = fixture_store();
    let err = vz_err(&store, &["mount", "nope"]);
    assert!(err.contains("container nope does not exist"), "{err}");
    let err = vz_err(&store, &["create", "c1", "--template", "missing"]);
    assert!(err.contains("template missing not found"), "{err}");
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    let err = vz_err(&store, &["create", "c1", "--template", "fx"]);
    assert!(err.contains("already exists"), "{err}");
    let err = vz_err(
        &store,
        &["mount", "c1", t.path().join("missing").to_str().unwrap()],
    );
    assert!(
        err.contains("missing") && err.contains("No such file"),
        "{err}"
    );
    let full = t.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"x").unwrap();
    let err = vz_err(&store, &["mount", "c1", full.to_str().unwrap()]);
    assert!(err.contains("is not empty"), "{err}");
    let err = vz_err(&t.path().join("nostore"), &["mount", "c1"]);
    assert!(err.contains("is not a vzstore store"), "{err}");

    let m = Mounted::new(&store, "c1");
    let err = vz_err(&store, &["mount", "c1"]);
    assert!(err.contains("already mounted"), "{err}");
    let err = vz_err(&store, &["destroy", "c1"]);
    assert!(err.contains("is mounted"), "{err}");
    let err = vz_err(&store, &["templates", "rm", "fx"]);
    assert!(err.contains("used by container c1"), "{err}");
    assert!(m.path.join("etc/hostname").exists());
    vz_ok(&store, &["destroy", "--force", "c1"]);
    assert!(!store.join("private/c1").exists());
    assert!(!vz_ok(&store, &["list"]).contains("c1"));
    drop(m);
}

#[test]
fn report_counts_containers() {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    vz_ok(&store, &["create", "c2", "--template", "fx"]);
    let m = Mounted::new(&store, "c1");
    fs::write(m.path.join("root/blob"), noise(77, 1 << 20)).unwrap();
    m.umount();
    let r: serde_json::Value = serde_json::from_str(&vz_ok(&store, &["report", "--json"])).unwrap();
    let cs = r["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0]["name"], "c1");
    assert_eq!(cs[0]["template"], "fx@1");
    let p1 = cs[0]["private_bytes"].as_u64().unwrap();
    let p2 = cs[1]["private_bytes"].as_u64().unwrap();
    assert!(
        (1 << 20..(1 << 20) + (64 << 10)).contains(&p1),
        "c1 private {p1}"
    );
    assert!(p2 < 64 << 10, "c2 private {p2}");
    assert_eq!(
        r["store"]["private_bytes"].as_u64().unwrap(),
        du_b1(&store.join("private"))
    );
}

#[test]
fn stale_mount_is_cleaned_and_fsynced_data_survives_sigkill() {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    let m = Mounted::new(&store, "c1");
    {
        use std::io::Write;
        let mut f = fs::File::create(m.path.join("root/durable")).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_all().unwrap();
    }
    fs::write(m.path.join("etc/hostname"), b"also\n").unwrap();
    kill_daemon(&store, "c1");
    // The mount point is now dead: the next mount cleans it up.
    let m2 = Mounted::new(&store, "c1");
    assert_eq!(fs::read(m2.path.join("root/durable")).unwrap(), b"synced");
    assert_eq!(fs::read(m2.path.join("etc/hostname")).unwrap(), b"also\n");
    m2.umount();
    drop(m);
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

/// SIGKILL the mount daemon of a container.
pub fn kill_daemon(store: &std::path::Path, name: &str) {
    let needle = format!("mount\0--foreground\0{name}\0");
    let store_s = store.to_string_lossy().into_owned();
    let mut killed = 0;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains(&needle) && cmd.contains(&store_s) {
            let pid: i32 = e.file_name().to_string_lossy().parse().unwrap();
            std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status()
                .unwrap();
            killed += 1;
        }
    }
    assert_eq!(killed, 1, "mount daemon of {name} not found");
    let start = std::time::Instant::now();
    while !vz_ok(store, &["list"]).contains(" no ") {
        assert!(start.elapsed().as_secs() < 10, "daemon did not die");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Reads of template files go through FUSE passthrough (the kernel reads the
/// object itself, so containers share its page cache); the daemon says so in its
/// log. This machine kind's kernel (6.18) offers it: a failure here means
/// passthrough broke, not that the kernel lacks it.
#[test]
fn passthrough_is_used_and_logged() {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, src) = fixture_store();
    vz_ok(&store, &["create", "c1", "c2", "--template", "fx"]);
    let m = Mounted::with_log(&store, "c1", &[]);
    assert_eq!(
        fs::read(m.path.join("usr/bin/big")).unwrap(),
        fs::read(src.join("usr/bin/big")).unwrap()
    );
    // Written through passthrough: size and content are right, also after remount.
    fs::write(m.path.join("root/pt"), b"through the backing file").unwrap();
    assert_eq!(fs::metadata(m.path.join("root/pt")).unwrap().len(), 24);
    let log = fs::read_to_string(store.join("private/c1/mount.log")).unwrap();
    assert!(log.contains("FUSE passthrough enabled"), "{log}");
    m.umount();
    let m = Mounted::new(&store, "c1");
    assert_eq!(
        fs::read(m.path.join("root/pt")).unwrap(),
        b"through the backing file"
    );
    m.umount();
    // --no-passthrough is honoured and logged.
    let m = Mounted::with_log(&store, "c2", &["--no-passthrough"]);
    assert_eq!(
        fs::read(m.path.join("usr/bin/big")).unwrap(),
        fs::read(src.join("usr/bin/big")).unwrap()
    );
    let log = fs::read_to_string(store.join("private/c2/mount.log")).unwrap();
    assert!(log.contains("passthrough not requested"), "{log}");
    m.umount();
}

/// gc keeps everything a container references: its base version cannot be
/// removed while the container exists, and gc beside a mounted container leaves
/// every file readable.
fn gc_keeps_objects_of_containers(b: Backend) {
    if !require_root("a FUSE mount of the fixture: device nodes, other owners") {
        return;
    }
    let (t, store, src) = fixture_store();
    vz_ok(
        &store,
        &["create", "c1", "--template", "fx", "--backend", b.name()],
    );
    // A new version of the template with different content; then try to drop v1.
    let src2 = t.path().join("src2");
    fs::create_dir(&src2).unwrap();
    fs::write(src2.join("only-in-v2"), noise(99, 5000)).unwrap();
    vz_ok(&store, &["ingest", src2.to_str().unwrap(), "--name", "fx"]);
    let err = vz_err(&store, &["templates", "rm", "fx@1"]);
    assert!(err.contains("used by container c1"), "{err}");
    let m = Mounted::new(&store, "c1");
    let out = vz_ok(&store, &["gc"]);
    assert!(out.contains("removed 0 of"), "{out}");
    assert_same_tree(&src, &m.path);
    m.umount();
    vz_ok(&store, &["destroy", "c1"]);
    vz_ok(&store, &["templates", "rm", "fx@1"]);
    let out = vz_ok(&store, &["gc"]);
    assert!(!out.contains("removed 0 of"), "{out}");
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}
both_backends!(gc_keeps_objects_of_containers);
