//! No host user reads what a container or template keeps private (issue 7.3):
//! the store's objects, catalog and private areas are closed to other users,
//! while mounts serve each file by the container's own permissions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Run `cmd` as the unprivileged user `nobody`; true when it succeeds.
fn as_nobody(args: &[&str]) -> bool {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("run setpriv (util-linux)");
    out.status.success()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn other_users_cannot_read_objects_catalog_or_private_data() {
    if !require_root("another user, other owners and FUSE mounts") {
        return;
    }
    let (t, store, _src) = fixture_store();
    // The parent must be open, or every check below would pass for that reason.
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    let m = Mounted::new(&store, "c1");
    fs::write(m.path.join("etc/secret"), b"container secret").unwrap();
    fs::set_permissions(m.path.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.path.join("etc/public"), b"hello").unwrap();
    fs::set_permissions(m.path.join("etc/public"), fs::Permissions::from_mode(0o644)).unwrap();

    let obj = fs::read_dir(store.join("objects/"))
        .unwrap()
        .flat_map(|fan| fs::read_dir(fan.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .next()
        .expect("an object");
    let data = store.join("private/c1/data");
    let data_file = fs::read_dir(&data).unwrap().next().unwrap().unwrap().path();
    assert_eq!(mode(&data_file) & 0o077, 0, "data files are 0600");
    for p in [
        store.join("objects"),
        store.join("meta"),
        store.join("private"),
        store.join("private/c1"),
        data.clone(),
    ] {
        assert!(
            !as_nobody(&["ls", p.to_str().unwrap()]),
            "{} can be listed by another user",
            p.display()
        );
    }
    for p in [obj, data_file, store.join("meta/CURRENT")] {
        assert!(
            !as_nobody(&["cat", p.to_str().unwrap()]),
            "{} can be read by another user",
            p.display()
        );
    }
    assert!(
        !as_nobody(&["ls", store.to_str().unwrap()]),
        "store root is listable"
    );
    // No host user reaches a mounted root through the store: mounts carry suid,
    // so that would be a way to run a container's setuid-root programs.
    let public = m.path.join("etc/public");
    assert!(!as_nobody(&["cat", public.to_str().unwrap()]));
    assert!(!as_nobody(&["ls", m.path.to_str().unwrap()]));
    // Where the mount is reachable (here: bind-mounted to an open directory, as
    // a container's processes see it from inside), it serves each file by the
    // container's own permissions.
    let open = t.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let ok = Command::new("mount")
        .args(["--bind", m.path.to_str().unwrap(), open.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(ok.success());
    let seen = as_nobody(&["cat", open.join("etc/public").to_str().unwrap()]);
    let secret = as_nobody(&["cat", open.join("etc/secret").to_str().unwrap()]);
    let _ = Command::new("umount").arg("-l").arg(&open).status();
    assert!(
        seen,
        "a 0644 file of the container is not served to other users"
    );
    assert!(
        !secret,
        "a 0600 file of the container is served to other users"
    );
    m.umount();
}

#[test]
fn stores_made_by_earlier_versions_are_tightened_on_the_next_write() {
    if !require_root("another user, other owners and FUSE mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    for d in ["", "objects", "meta", "private", "tmp", "locks"] {
        fs::set_permissions(store.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A read-only command leaves the store as it is.
    vz_ok(&store, &["templates"]);
    assert_eq!(mode(&store.join("objects")), 0o755);
    let out = vz(&store, &["create", "c1", "--template", "fx"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tightened the permissions"), "{err}");
    for d in ["", "objects", "meta", "private", "tmp", "locks", "root"] {
        assert_eq!(mode(&store.join(d)), 0o700, "{d}");
    }
}

#[test]
fn new_stores_and_private_areas_are_closed_whatever_the_umask() {
    if !require_root("another user, other owners and FUSE mounts") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("s");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {} --store {} init",
            bin().display(),
            store.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    for d in ["", "objects", "private", "root"] {
        assert_eq!(mode(&store.join(d)), 0o700, "{d}");
    }
    // The object-check records too, once a verify wrote them.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000 && exec {} --store {} verify",
            bin().display(),
            store.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    for f in ["verified", "verified.log"] {
        assert_eq!(mode(&store.join(f)), 0o600, "{f}");
    }
}
