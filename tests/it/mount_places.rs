//! Where containers may be mounted, what destroy and umount may touch, and
//! trees a container makes deep: found by an adversarial pass over the kernel
//! backend; the rules hold for both backends.

use std::fs;
use std::process::Command;

use crate::common::*;

fn mount_at(store: &std::path::Path, ct: &str, at: &std::path::Path) -> std::process::Output {
    vz(store, &["mount", ct, at.to_str().unwrap()])
}

fn places_are_refused(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    let (t, store, src) = fixture_store();
    for ct in ["c1", "c2"] {
        vz_ok(
            &store,
            &["create", ct, "--template", "fx", "--backend", b.name()],
        );
    }
    // Inside the store, other than root/<name>: refused.
    let inside = store.join("private/c2/mp");
    fs::create_dir_all(&inside).unwrap();
    let out = mount_at(&store, "c1", &inside);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inside the store"), "{err}");
    fs::remove_dir(&inside).unwrap();
    // Inside another mounted container, directly or through a symlink that
    // its processes control: refused.
    let m1 = Mounted::new(&store, "c1");
    let host = t.path().join("host-dir");
    fs::create_dir_all(host.join("empty")).unwrap();
    std::os::unix::fs::symlink(&host, m1.path.join("root/escape")).unwrap();
    fs::create_dir_all(m1.path.join("root/plain")).unwrap();
    for p in [
        m1.path.join("root/escape/empty"),
        m1.path.join("root/plain"),
    ] {
        let out = mount_at(&store, "c2", &p);
        assert!(!out.status.success(), "mounted at {}", p.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("inside a mounted container"), "{err}");
    }
    assert!(fs::read_dir(host.join("empty")).unwrap().next().is_none());
    // Something mounted on top of a container: umount refuses, both stay.
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "top", m1.path.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let err = vz_err(&store, &["umount", "c1"]);
    assert!(err.contains("on top"), "{err}");
    let st = Command::new("umount").arg(&m1.path).status().unwrap();
    assert!(st.success());
    assert_same_tree_except_root(&src, &m1.path);
    m1.umount();
}
both_backends!(places_are_refused);

/// The fixture's tree through a mount that a test changed only under root/.
fn assert_same_tree_except_root(src: &std::path::Path, mnt: &std::path::Path) {
    let mut a = snapshot(src);
    let mut b = snapshot(mnt);
    a.retain(|k, _| !k.starts_with(b"root"));
    b.retain(|k, _| !k.starts_with(b"root"));
    a.remove(&b""[..]);
    b.remove(&b""[..]);
    assert!(a == b, "trees differ outside root/");
}

fn destroy_never_crosses_into_a_mount(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    let (t, store, src) = fixture_store();
    vz_ok(
        &store,
        &[
            "create",
            "victim",
            "--template",
            "fx",
            "--backend",
            b.name(),
        ],
    );
    vz_ok(
        &store,
        &["create", "gone", "--template", "fx", "--backend", b.name()],
    );
    // A directory of another file system bind-mounted into gone's private
    // area (as an operator's mistake could): destroy refuses, removes nothing.
    let victim_files = t.path().join("victim-files");
    fs::create_dir_all(&victim_files).unwrap();
    fs::write(victim_files.join("precious"), b"keep me").unwrap();
    let mp = store.join("private/gone/mp");
    fs::create_dir_all(&mp).unwrap();
    let st = Command::new("mount")
        .args([
            "--bind",
            victim_files.to_str().unwrap(),
            mp.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let err = vz_err(&store, &["destroy", "gone"]);
    assert!(err.contains("mounted inside"), "{err}");
    assert!(vz_ok(&store, &["list"]).contains("gone"));
    assert_eq!(fs::read(victim_files.join("precious")).unwrap(), b"keep me");
    let st = Command::new("umount").arg(&mp).status().unwrap();
    assert!(st.success());
    vz_ok(&store, &["destroy", "gone"]);
    assert!(!store.join("private/gone").exists());
    assert_eq!(fs::read(victim_files.join("precious")).unwrap(), b"keep me");
    let m = Mounted::new(&store, "victim");
    assert_same_tree(&src, &m.path);
    m.umount();
}
both_backends!(destroy_never_crosses_into_a_mount);

#[test]
fn a_container_tree_deeper_than_path_max_still_lists_reports_and_destroys() {
    if !require_root("kernel mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(
        &store,
        &["create", "deep", "--template", "fx", "--backend", "kernel"],
    );
    let m = Mounted::new(&store, "deep");
    let py = format!(
        "import os\nos.chdir('{}')\nfor i in range(30):\n    n='D'*250+'%03d'%i\n    os.mkdir(n)\n    os.chdir(n)\nopen('f','wb').write(b'x'*5000)",
        m.path.join("root").display()
    );
    let st = Command::new("python3").arg("-c").arg(&py).status().unwrap();
    assert!(st.success());
    // Template hardlinks written through one name are the container's own
    // under every name.
    fs::write(m.path.join("usr/bin/perl"), b"new").unwrap();
    m.umount();
    assert!(vz_ok(&store, &["list"]).contains("deep"));
    let rep = vz_ok(&store, &["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&rep).unwrap();
    let c = &v["containers"][0];
    let logical = c["logical_bytes"].as_u64().unwrap();
    let shared = c["shared_bytes"].as_u64().unwrap();
    assert!(logical >= shared + 5000, "{c}");
    vz_ok(&store, &["destroy", "deep"]);
    assert!(!store.join("private/deep").exists());
}
