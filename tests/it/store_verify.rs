//! verify finds corrupt, truncated and missing objects and names the templates.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

fn setup() -> (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("f{i}")), noise(i, 5_000 + i as usize)).unwrap();
    }
    vz_ok(
        &store,
        &["ingest", src.to_str().unwrap(), "--name", "victim"],
    );
    let out = vz_ok(&store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
    let mut objs = Vec::new();
    for fan in fs::read_dir(store.join("objects")).unwrap() {
        for o in fs::read_dir(fan.unwrap().path()).unwrap() {
            objs.push(o.unwrap().path());
        }
    }
    objs.sort();
    assert_eq!(objs.len(), 5);
    (t, store, objs)
}

fn name_of(p: &Path) -> String {
    format!(
        "{}{}",
        p.parent().unwrap().file_name().unwrap().to_string_lossy(),
        p.file_name().unwrap().to_string_lossy()
    )
}

fn make_writable(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn flipped_byte_is_corrupt() {
    let (_t, store, objs) = setup();
    make_writable(&objs[0]);
    let mut data = fs::read(&objs[0]).unwrap();
    data[100] ^= 1;
    fs::write(&objs[0], data).unwrap();
    let out = vz(&store, &["verify"]);
    assert!(!out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(&format!(
            "CORRUPT object {} (used by: victim@1)",
            name_of(&objs[0])
        )),
        "{s}"
    );
    // Export of an affected template refuses rather than copy bad bytes.
    let err = vz_err(
        &store,
        &[
            "export",
            "victim",
            store.parent().unwrap().join("e").to_str().unwrap(),
        ],
    );
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn truncated_object_is_corrupt() {
    let (_t, store, objs) = setup();
    make_writable(&objs[1]);
    fs::OpenOptions::new()
        .write(true)
        .open(&objs[1])
        .unwrap()
        .set_len(10)
        .unwrap();
    let out = vz(&store, &["verify"]);
    assert!(!out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(&format!("CORRUPT object {}", name_of(&objs[1]))),
        "{s}"
    );
}

#[test]
fn missing_object_is_reported() {
    let (_t, store, objs) = setup();
    fs::remove_file(&objs[2]).unwrap();
    let out = vz(&store, &["verify"]);
    assert!(!out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains(&format!(
            "MISSING object {} (used by: victim@1)",
            name_of(&objs[2])
        )),
        "{s}"
    );
    assert!(s.contains("NOT CLEAN"), "{s}");
}
