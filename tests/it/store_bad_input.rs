//! Invariant 7: bad input gets a clear error naming the path and reason, a non-zero
//! exit, and changes nothing already stored.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::*;

fn templates_json(store: &Path) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&vz_ok(store, &["report", "--json"])).unwrap()["templates"].clone()
}

fn assert_clean(store: &Path) {
    let out = vz_ok(store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
}

#[test]
fn missing_source_and_bad_names() {
    let (t, store) = new_store();
    let err = vz_err(&store, &["ingest", "/nonexistent/src", "--name", "x"]);
    assert!(
        err.contains("/nonexistent/src") && err.contains("No such file"),
        "{err}"
    );
    let f = t.path().join("file");
    fs::write(&f, b"x").unwrap();
    let err = vz_err(&store, &["ingest", f.to_str().unwrap(), "--name", "x"]);
    assert!(
        err.contains("not a tar archive") && err.contains("file"),
        "{err}"
    );
    for bad in ["a/b", "", "../x", "x@1"] {
        let err = vz_err(
            &store,
            &["ingest", t.path().to_str().unwrap(), "--name", bad],
        );
        assert!(err.contains("invalid name"), "{bad}: {err}");
    }
    assert_eq!(templates_json(&store), serde_json::json!([]));
    assert_clean(&store);
}

#[test]
fn store_not_initialised_or_foreign() {
    let t = tempfile::tempdir().unwrap();
    let err = vz_err(&t.path().join("none"), &["templates"]);
    assert!(err.contains("is not a vzstore store"), "{err}");
    let foreign = t.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("precious"), b"data").unwrap();
    let err = vz_err(&foreign, &["init"]);
    assert!(
        err.contains("not empty and is not a vzstore store"),
        "{err}"
    );
    assert_eq!(fs::read(foreign.join("precious")).unwrap(), b"data");
    // init is idempotent.
    let s = t.path().join("s");
    vz_ok(&s, &["init"]);
    vz_ok(&s, &["init"]);
}

#[test]
fn unreadable_file_names_path() {
    if !require_root("chowns the store to nobody and ingests as nobody") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("ok"), b"fine").unwrap();
    fs::write(src.join("secret"), b"hidden").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads everything, so run the ingest as nobody on a store nobody owns.
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&store)
        .arg(t.path())
        .status()
        .unwrap();
    assert!(status.success());
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin())
        .arg("--store")
        .arg(&store)
        .args(["ingest", src.to_str().unwrap(), "--name", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret") && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(templates_json(&store), serde_json::json!([]));
    assert_clean(&store);
}

#[test]
fn file_changing_during_ingest_is_refused() {
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("stable"), b"stable").unwrap();
    let hot = src.join("hot");
    fs::write(&hot, noise(1, 256 << 20)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let hot = hot.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new().write(true).open(&hot).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f.write_all_at(&i.to_le_bytes(), (i * 4096 * 7919) % (256 << 20))
                    .unwrap();
                i += 1;
            }
        })
    };
    let out = vz(&store, &["ingest", src.to_str().unwrap(), "--name", "x"]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        !out.status.success(),
        "ingest of a file being written succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hot") && err.contains("changed while it was being ingested"),
        "{err}"
    );
    assert_eq!(templates_json(&store), serde_json::json!([]));
    assert_clean(&store);
}

/// Disk full in the middle of an ingest: a store on a 48 MiB tmpfs, a 100 MB source.
#[test]
fn disk_full_changes_nothing() {
    if !require_root("mounts a tmpfs") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "cannot mount tmpfs for the disk-full test");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.clone());
    let store = mnt.join("store");
    vz_ok(&store, &["init"]);
    let small = t.path().join("small-src");
    fs::create_dir_all(&small).unwrap();
    fs::write(small.join("a"), noise(9, 1000)).unwrap();
    vz_ok(
        &store,
        &["ingest", small.to_str().unwrap(), "--name", "small"],
    );
    let big = t.path().join("big-src");
    fs::create_dir_all(&big).unwrap();
    for i in 0..10 {
        fs::write(big.join(format!("f{i}")), noise(100 + i, 10 << 20)).unwrap();
    }
    let err = vz_err(&store, &["ingest", big.to_str().unwrap(), "--name", "big"]);
    assert!(err.contains("No space left on device"), "{err}");
    let tpl = templates_json(&store);
    assert_eq!(tpl.as_array().unwrap().len(), 1, "{tpl}");
    assert_eq!(tpl[0]["name"], "small");
    assert_clean(&store);
    // The failed session cleaned up after itself: space is back.
    let e = t.path().join("e");
    vz_ok(&store, &["export", "small", e.to_str().unwrap()]);
    assert_same_tree(&small, &e);
    assert!(fs::read_dir(store.join("tmp")).unwrap().next().is_none());
}
