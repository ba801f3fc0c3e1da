//! What is particular to the kernel backend (EROFS image + overlayfs): a mount
//! with no process, the loop-device route, a reboot, other mount namespaces,
//! faults while writing an image, disk full, and refusals. The image itself is
//! tested in `kernel_image`; the semantic suites (identity, isolation, model,
//! workload, conformance) run on both backends elsewhere.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The kernel images in the store, sorted.
pub fn images(store: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(store.join("images"))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `vzstore create NAME --template T --backend kernel`.
pub fn create_kernel(store: &Path, name: &str, template: &str) -> String {
    vz_ok(
        store,
        &[
            "create",
            name,
            "--template",
            template,
            "--backend",
            "kernel",
        ],
    )
}

fn mounted_here(p: &Path) -> bool {
    let want = p.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}

#[test]
fn a_kernel_container_is_a_mount_with_no_process_and_refuses_destroy_while_mounted() {
    if !require_root("kernel mounts") {
        return;
    }
    let (_t, store, src) = fixture_store();
    let out = create_kernel(&store, "c1", "fx");
    assert!(out.contains("(kernel)"), "{out}");
    let private = store.join("private/c1");
    assert_eq!(
        fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    // No daemon: nothing of ours has the mount point as its working directory
    // or argument; the mount is overlayfs named after the store and container.
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(m.path.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - overlay vzstore:"), "{line}");
    let ps = Command::new("pgrep")
        .args(["-f", "vzstore.*mount c1"])
        .output()
        .unwrap();
    assert!(ps.stdout.is_empty(), "a process serves a kernel mount");
    let list = vz_ok(&store, &["list"]);
    assert!(list.contains("kernel") && list.contains("yes"), "{list}");
    let err = vz_err(&store, &["destroy", "c1"]);
    assert!(err.contains("mounted"), "{err}");
    let err = vz_err(&store, &["mount", "c1"]);
    assert!(err.contains("already mounted"), "{err}");
    fs::write(m.path.join("root/own"), vec![7u8; 300_000]).unwrap();
    // The upper directory is the container's private area.
    let rep = vz_ok(&store, &["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&rep).unwrap();
    let c = &v["containers"][0];
    assert!(c["private_bytes"].as_u64().unwrap() >= 300_000, "{c}");
    assert!(
        c["logical_bytes"].as_u64().unwrap() >= c["shared_bytes"].as_u64().unwrap() + 300_000,
        "{c}"
    );
    m.umount();
    assert!(vz_ok(&store, &["list"]).contains(" no "));
    vz_ok(&store, &["destroy", "c1"]);
    assert!(!private.exists());
}

#[test]
fn a_missing_image_is_made_again_on_mount_and_the_loop_device_route_serves_the_same() {
    if !require_root("kernel mounts and loop devices") {
        return;
    }
    let (_t, store, src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    for i in images(&store) {
        fs::remove_file(i).unwrap();
    }
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    m.umount();
    let img = images(&store).remove(0);
    // Through a loop device (the route of kernels before 6.12), which goes
    // away with the mount.
    let m = Mounted::with_env(&store, "c1", &[("VZSTORE_EROFS_LOOP", "1")]);
    let attached = |img: &Path| {
        let out = Command::new("losetup").arg("-j").arg(img).output().unwrap();
        !out.stdout.is_empty()
    };
    assert!(attached(&img), "the image is not on a loop device");
    assert_same_tree(&src, &m.path);
    m.umount();
    assert!(!attached(&img), "the loop device outlived the mount");
}

#[test]
fn after_a_reboot_mount_works_again_and_changes_are_kept() {
    if !require_root("kernel mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    let m = Mounted::new(&store, "c1");
    fs::write(m.path.join("etc/hostname"), b"rebooted\n").unwrap();
    fs::remove_file(m.path.join("usr/bin/wall")).unwrap();
    let path = m.path.clone();
    // A reboot: the kernel forgets every mount; vzstore is not asked.
    let st = Command::new("umount").arg(&path).status().unwrap();
    assert!(st.success());
    std::mem::forget(m);
    assert!(!mounted_here(&path));
    assert!(vz_ok(&store, &["list"]).contains(" no "));
    let err = vz_err(&store, &["umount", "c1"]);
    assert!(err.contains("not mounted"), "{err}");
    let m = Mounted::new(&store, "c1");
    assert_eq!(
        fs::read(m.path.join("etc/hostname")).unwrap(),
        b"rebooted\n"
    );
    assert!(!m.path.join("usr/bin/wall").exists());
    m.umount();
}

#[test]
fn a_failed_image_write_leaves_no_container_and_no_half_image() {
    if !require_root("kernel mounts") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    build_fixture(&src);
    // At ingest a failed image write is a warning: the template serves FUSE
    // containers and gets its image on first kernel use.
    for code in ["ENOSPC", "EIO"] {
        let fp = format!("image-write=return({code})");
        let out = vz_env(
            &store,
            &[("FAILPOINTS", fp.as_str())],
            &["ingest", src.to_str().unwrap(), "--name", "fx"],
        );
        assert!(out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no kernel image") && err.contains("tmp"),
            "{err}"
        );
        assert!(images(&store).is_empty());
        // At create it is an error naming the file, and nothing is created.
        let out = vz_env(
            &store,
            &[("FAILPOINTS", fp.as_str())],
            &["create", "c1", "--template", "fx", "--backend", "kernel"],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        let want = if code == "ENOSPC" {
            "No space left"
        } else {
            "Input/output error"
        };
        assert!(err.contains(want) && err.contains("image-"), "{err}");
        assert!(!store.join("private/c1").exists());
        assert!(!vz_ok(&store, &["list"]).contains("c1"));
        assert!(images(&store).is_empty());
        let leftovers: Vec<_> = fs::read_dir(store.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with("image-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
    }
    // Without the fault it works.
    create_kernel(&store, "c1", "fx@2");
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    m.umount();
}

#[test]
fn a_template_the_kernel_cannot_show_is_refused_by_name_and_stays_good_for_fuse() {
    if !require_root("device nodes") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("dev")).unwrap();
    fs::write(src.join("file"), b"x").unwrap();
    // A 0:0 character device is overlayfs's whiteout: as a lower file it
    // would hide itself.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("dev/wh"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let out = vz(&store, &["ingest", src.to_str().unwrap(), "--name", "w"]);
    assert!(out.status.success());
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains("dev/wh") && warn.contains("no kernel image"),
        "{warn}"
    );
    let err = vz_err(
        &store,
        &["create", "k1", "--template", "w", "--backend", "kernel"],
    );
    assert!(err.contains("dev/wh") && err.contains("whiteout"), "{err}");
    assert!(!store.join("private/k1").exists());
    vz_ok(&store, &["create", "f1", "--template", "w"]);
    let m = Mounted::new(&store, "f1");
    assert_eq!(
        fs::symlink_metadata(m.path.join("dev/wh")).unwrap().rdev(),
        0
    );
    m.umount();
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

#[test]
fn mounting_without_cap_sys_admin_names_what_is_missing() {
    if !require_root("dropping a capability") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    let out = Command::new("setpriv")
        .args(["--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"])
        .arg(bin())
        .arg("--store")
        .arg(&store)
        .args(["mount", "c1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_SYS_ADMIN"), "{err}");
    assert!(!vz_ok(&store, &["list"]).contains("yes"));
}

#[test]
fn kill_9_while_an_image_is_written_leaves_a_clean_store() {
    if !require_root("kernel mounts") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (_t, store, src) = fixture_store();
    for i in images(&store) {
        fs::remove_file(i).unwrap();
    }
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .args(["create", "c1", "--template", "fx", "--backend", "kernel"])
        .env("FAILPOINTS", "image-write=sleep(10000)")
        .spawn()
        .unwrap();
    // Wait until the temporary image exists, then kill.
    let tmp_image = || {
        fs::read_dir(store.join("tmp")).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("image-")
        })
    };
    let start = std::time::Instant::now();
    while !tmp_image() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the image write never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(images(&store).is_empty(), "a half image was published");
    assert!(!vz_ok(&store, &["list"]).contains("c1"));
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
    create_kernel(&store, "c1", "fx");
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    m.umount();
}

#[test]
fn disk_full_in_and_around_a_kernel_container() {
    if !require_root("kernel mounts and loop devices") {
        return;
    }
    let lfs = LoopFs::new(64);
    let store = lfs.path.join("store");
    vz_ok(&store, &["init"]);
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/big"), noise(9, 2 << 20)).unwrap();
    fs::write(src.join("etc/small"), b"small").unwrap();
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "t"]);
    create_kernel(&store, "c1", "t");
    {
        let m = Mounted::new(&store, "c1");
        fs::write(m.path.join("etc/keep"), b"kept").unwrap();
        // Writing into a template file copies it up; the disk fills.
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.path.join("etc/big"))
            .unwrap();
        let err = loop {
            use std::io::Write;
            if let Err(e) = f.write_all(&[1u8; 1 << 20]).and_then(|()| f.sync_data()) {
                break e;
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
        drop(f);
        fs::remove_file(m.path.join("etc/big")).unwrap();
        m.umount();
    }
    // Completely full from outside: a new kernel container is refused with
    // the reason, and leaves nothing behind.
    let filler = fill_up(&lfs.path);
    let out = vz(
        &store,
        &["create", "c2", "--template", "t", "--backend", "kernel"],
    );
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("No space left"), "{err}");
        assert!(!store.join("private/c2").exists());
        assert!(!vz_ok(&store, &["list"]).contains("c2"));
    }
    fs::remove_file(&filler).unwrap();
    // The first container kept its changes; the template is whole.
    let m = Mounted::new(&store, "c1");
    assert_eq!(fs::read(m.path.join("etc/keep")).unwrap(), b"kept");
    assert!(!m.path.join("etc/big").exists());
    m.umount();
    let e = t.path().join("export");
    vz_ok(&store, &["export", "t", e.to_str().unwrap()]);
    assert_same_tree(&src, &e);
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

#[test]
fn a_kernel_mount_in_another_mount_namespace_is_not_destroyed_under_it() {
    if !require_root("mount namespaces") {
        return;
    }
    let (t, store, _src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    let ready = t.path().join("ready");
    let script = format!(
        "{} --store {} mount c1 && touch {} && exec sleep 60",
        bin().display(),
        store.display(),
        ready.display()
    );
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the mount in the namespace never came up"
        );
        assert!(child.try_wait().unwrap().is_none(), "unshare exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = vz_err(&store, &["destroy", "c1"]);
    assert!(err.contains("mounted"), "{err}");
    assert!(store.join("private/c1/upper").is_dir());
    let err = vz_err(&store, &["mount", "c1"]);
    assert!(err.contains("mount namespace of process"), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The namespace is gone with its last process, and its mount with it.
    let start = std::time::Instant::now();
    loop {
        let out = vz(&store, &["destroy", "c1"]);
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!store.join("private/c1").exists());
}

#[test]
fn containers_of_one_template_share_one_image_mount() {
    if !require_root("kernel mounts") {
        return;
    }
    let (_t, store, src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    create_kernel(&store, "c2", "fx");
    let erofs_mounts = || {
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(" - erofs ") && l.contains(store.to_str().unwrap()))
            .count()
    };
    let m1 = Mounted::new(&store, "c1");
    let m2 = Mounted::new(&store, "c2");
    assert_eq!(erofs_mounts(), 1, "one image mount for both");
    assert_same_tree(&src, &m2.path);
    m1.umount();
    assert_eq!(erofs_mounts(), 1, "still used by c2");
    assert_same_tree(&src, &m2.path);
    m2.umount();
    assert_eq!(erofs_mounts(), 0, "released with the last container");
    let m1 = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m1.path);
    m1.umount();
}
