//! Issue 7: a container never reads bytes that do not match their hash, and the
//! store notices and repairs damaged objects.
//!
//! - The mount daemon checks an object before handing it out (size always,
//!   blake3 on the first open since the object's ctime changed): a flipped byte,
//!   a truncated object or a missing object gives EIO on open/read through the
//!   mount, with and without passthrough, is logged once per object with the
//!   path and the template, and a copy-up of such a file fails and changes
//!   nothing. A change to an object after a successful check is caught on the
//!   next open.
//! - `ingest` replaces an object it finds damaged (wrong size) instead of
//!   trusting it; it never records a short read.
//! - `verify` names paths and containers (text and JSON); `verify --repair`
//!   restores from a source and names what it could not restore.
//! - `--store` naming a regular file gets a clear message.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// The object file holding `content`.
fn object_of(store: &Path, content: &[u8]) -> PathBuf {
    let hex = hash_of(content);
    store.join("objects").join(&hex[..2]).join(&hex[2..])
}

fn hash_of(content: &[u8]) -> String {
    blake3::hash(content).to_hex().to_string()
}

/// Flip one byte of a file in place (size unchanged; as root the 0444 mode does
/// not stop us).
fn flip_byte(p: &Path, off: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(f.read_at(&mut b, off).unwrap(), 1);
    b[0] ^= 0x20;
    f.write_all_at(&b, off).unwrap();
    f.sync_all().unwrap();
}

fn truncate_to(p: &Path, len: u64) {
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len(len).unwrap();
    f.sync_all().unwrap();
}

/// Reading `p` must fail with EIO, not return any bytes.
fn assert_eio(p: &Path) {
    match fs::File::open(p) {
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EIO),
            "open of {}: {e}, expected EIO",
            p.display()
        ),
        Ok(f) => {
            let mut buf = vec![0u8; 1 << 20];
            match f.read_at(&mut buf, 0) {
                Err(e) => assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "read of {}: {e}, expected EIO",
                    p.display()
                ),
                Ok(n) => panic!(
                    "read of damaged {} returned {n} bytes instead of EIO",
                    p.display()
                ),
            }
        }
    }
}

/// `cat PATH` in a new process: must fail with EIO and print nothing.
fn assert_cat_eio(p: &Path) {
    let out = Command::new("cat").arg(p).output().unwrap();
    assert!(
        !out.status.success(),
        "cat {} succeeded on a damaged object",
        p.display()
    );
    assert!(
        out.stdout.is_empty(),
        "cat {} printed {} bytes of a damaged object",
        p.display(),
        out.stdout.len()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
}

fn mount_log(store: &Path, ct: &str) -> String {
    fs::read_to_string(store.join("private").join(ct).join("mount.log")).unwrap_or_default()
}

/// The lines of the daemon log that name object `hash`.
fn log_lines_naming(store: &Path, ct: &str, hash: &str) -> Vec<String> {
    mount_log(store, ct)
        .lines()
        .filter(|l| l.contains(hash))
        .map(str::to_string)
        .collect()
}

/// Exactly one log line names `content`'s object, and it names the path in the
/// container and the template.
fn assert_logged_once(store: &Path, ct: &str, content: &[u8], path: &str, label: &str) {
    let h = hash_of(content);
    let lines = log_lines_naming(store, ct, &h);
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming object {h}:\n{}",
        mount_log(store, ct)
    );
    assert!(
        lines[0].contains(path),
        "log line lacks {path}: {}",
        lines[0]
    );
    assert!(
        lines[0].contains(label),
        "log line lacks {label}: {}",
        lines[0]
    );
}

/// Every file of a container's private area but the daemon's log: (size, blake3).
fn private_state(store: &Path, ct: &str) -> BTreeMap<PathBuf, (u64, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<PathBuf, (u64, String)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&p, base, out);
            } else if ft.is_file() && p.file_name().unwrap() != "mount.log" {
                let data = fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(base).unwrap().to_path_buf(),
                    (data.len() as u64, hash_of(&data)),
                );
            }
        }
    }
    let base = store.join("private").join(ct);
    let mut out = BTreeMap::new();
    walk(&base, &base, &mut out);
    out
}

/// A small tree: `(relative path, content)` of each file.
fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (rel, data) in files {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    }
}

fn mount_flags(passthrough: bool) -> &'static [&'static str] {
    if passthrough {
        &[]
    } else {
        &["--no-passthrough"]
    }
}

/// Mount container `ct` (passthrough or not, daemon logging at info level) and
/// check that we got the mode we asked for.
fn mount_as(store: &Path, ct: &str, passthrough: bool) -> Mounted {
    let m = Mounted::with_log(store, ct, mount_flags(passthrough));
    let log = mount_log(store, ct);
    if passthrough {
        assert!(
            log.contains("FUSE passthrough enabled"),
            "passthrough was asked for but not enabled:\n{log}"
        );
    } else {
        assert!(!log.contains("FUSE passthrough enabled"), "{log}");
    }
    m
}

/// A passthrough mount stayed in passthrough (no registration failure turned
/// it off), so the checks above were made for passthrough opens.
fn assert_still_passthrough(store: &Path, ct: &str, passthrough: bool) {
    let log = mount_log(store, ct);
    if passthrough {
        assert!(!log.contains("FUSE passthrough failed"), "{log}");
    }
}

struct Fixture {
    _t: tempfile::TempDir,
    store: PathBuf,
    src: PathBuf,
    good: Vec<u8>,
    flipped: Vec<u8>,
    truncated: Vec<u8>,
    missing: Vec<u8>,
    big: Vec<u8>,
}

/// Template `tpl` of a small tree, container `ct` on it.
fn fixture() -> Fixture {
    let (t, store) = new_store();
    let src = t.path().join("src");
    let f = Fixture {
        good: noise(10, 30_000),
        flipped: noise(11, 30_001),
        truncated: noise(12, 30_002),
        missing: noise(13, 30_003),
        big: noise(14, (2 << 20) + 17), // larger than ingest's in-memory limit
        _t: t,
        store,
        src,
    };
    write_tree(
        &f.src,
        &[
            ("etc/app/good", &f.good),
            ("etc/app/flipped", &f.flipped),
            ("usr/lib/truncated", &f.truncated),
            ("usr/lib/missing", &f.missing),
            ("usr/lib/big", &f.big),
        ],
    );
    vz_ok(
        &f.store,
        &["ingest", f.src.to_str().unwrap(), "--name", "tpl"],
    );
    vz_ok(&f.store, &["create", "ct", "--template", "tpl"]);
    f
}

fn damaged_objects_give_eio(passthrough: bool) {
    let f = fixture();
    let store = &f.store;
    // Damage three objects before the mount, one (big) while it is up.
    flip_byte(&object_of(store, &f.flipped), 12_345);
    truncate_to(&object_of(store, &f.truncated), 1_000);
    fs::remove_file(object_of(store, &f.missing)).unwrap();
    let m = mount_as(store, "ct", passthrough);
    let root = &m.path;

    assert_eq!(fs::read(root.join("etc/app/good")).unwrap(), f.good);
    for rel in ["etc/app/flipped", "usr/lib/truncated", "usr/lib/missing"] {
        // The metadata still comes from the manifest; only the content is refused.
        assert_eq!(
            fs::metadata(root.join(rel)).unwrap().len(),
            fs::metadata(f.src.join(rel)).unwrap().len(),
            "{rel}"
        );
        assert_eio(&root.join(rel));
        assert_eio(&root.join(rel)); // twice: still refused, logged once
        assert_cat_eio(&root.join(rel));
    }
    flip_byte(&object_of(store, &f.big), (1 << 20) + 3);
    assert_eio(&root.join("usr/lib/big"));

    assert_logged_once(store, "ct", &f.flipped, "/etc/app/flipped", "tpl@1");
    assert_logged_once(store, "ct", &f.truncated, "/usr/lib/truncated", "tpl@1");
    assert_logged_once(store, "ct", &f.missing, "/usr/lib/missing", "tpl@1");
    assert_logged_once(store, "ct", &f.big, "/usr/lib/big", "tpl@1");
    assert!(
        log_lines_naming(store, "ct", &hash_of(&f.good)).is_empty(),
        "{}",
        mount_log(store, "ct")
    );
    assert_still_passthrough(store, "ct", passthrough);
    m.umount();
}

#[test]
fn damaged_objects_give_eio_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    damaged_objects_give_eio(true);
}

#[test]
fn damaged_objects_give_eio_without_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    damaged_objects_give_eio(false);
}

/// A successful check is remembered only until the object changes (its ctime
/// moves): the next open after a change hashes it again.
fn change_after_check_is_caught(passthrough: bool) {
    let f = fixture();
    let store = &f.store;
    let m = mount_as(store, "ct", passthrough);
    let root = &m.path;
    // Checked and recorded as verified.
    assert_eq!(fs::read(root.join("etc/app/good")).unwrap(), f.good);
    assert_eq!(fs::read(root.join("usr/lib/big")).unwrap(), f.big);
    assert_eq!(fs::read(root.join("etc/app/flipped")).unwrap(), f.flipped);
    let rec = fs::metadata(store.join("verified.log")).unwrap().len();
    assert!(
        rec >= 3 * 48 && rec.is_multiple_of(48),
        "verified records: {rec} bytes"
    );
    // Opened again: still fine (and served from the record).
    assert_eq!(fs::read(root.join("etc/app/good")).unwrap(), f.good);

    // Now the objects change under the running mount; every handle is closed.
    flip_byte(&object_of(store, &f.good), 7);
    flip_byte(&object_of(store, &f.big), 2 << 20);
    truncate_to(&object_of(store, &f.flipped), 100);
    for rel in ["etc/app/good", "usr/lib/big", "etc/app/flipped"] {
        assert_cat_eio(&root.join(rel));
        assert_eio(&root.join(rel));
    }
    assert_logged_once(store, "ct", &f.good, "/etc/app/good", "tpl@1");
    assert_logged_once(store, "ct", &f.big, "/usr/lib/big", "tpl@1");
    assert_still_passthrough(store, "ct", passthrough);
    m.umount();

    // The records survive a restart but no longer match the objects.
    let _m = mount_as(store, "ct", passthrough);
    assert_cat_eio(&store.join("root/ct/etc/app/good"));
    assert_eq!(
        fs::read(store.join("root/ct/usr/lib/truncated")).unwrap(),
        f.truncated
    );
}

#[test]
fn change_after_check_is_caught_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    change_after_check_is_caught(true);
}

#[test]
fn change_after_check_is_caught_without_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    change_after_check_is_caught(false);
}

/// Opening a damaged shared file for writing (a copy-up) fails with EIO and
/// leaves the container as it was: nothing copied, nothing journaled.
fn copy_up_of_damaged_file_fails(passthrough: bool) {
    let f = fixture();
    let store = &f.store;
    flip_byte(&object_of(store, &f.flipped), 0);
    truncate_to(&object_of(store, &f.truncated), 0);
    let flipped_obj = fs::read(object_of(store, &f.flipped)).unwrap();
    // One real copy-up first, so the container has private state to keep. The
    // remount makes sure everything about it is saved (a passthrough handle's
    // RELEASE, which records the new size, reaches the daemon after close
    // returns).
    let m = mount_as(store, "ct", passthrough);
    fs::OpenOptions::new()
        .write(true)
        .open(m.path.join("etc/app/good"))
        .unwrap()
        .write_all_at(b"!", f.good.len() as u64)
        .unwrap();
    m.umount();
    let m = mount_as(store, "ct", passthrough);
    let root = &m.path;
    let before = private_state(store, "ct");
    let meta_before: Vec<_> = ["etc/app/flipped", "usr/lib/truncated"]
        .iter()
        .map(|r| {
            let m = fs::metadata(root.join(r)).unwrap();
            (m.len(), m.mtime(), m.mtime_nsec(), m.mode())
        })
        .collect();

    for rel in ["etc/app/flipped", "usr/lib/truncated"] {
        for append in [false, true] {
            let r = fs::OpenOptions::new()
                .write(true)
                .append(append)
                .open(root.join(rel));
            match r {
                Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{rel}: {e}"),
                Ok(_) => panic!("write open of damaged {rel} succeeded"),
            }
        }
    }
    assert_eq!(
        private_state(store, "ct"),
        before,
        "the private area changed"
    );
    let meta_after: Vec<_> = ["etc/app/flipped", "usr/lib/truncated"]
        .iter()
        .map(|r| {
            let m = fs::metadata(root.join(r)).unwrap();
            (m.len(), m.mtime(), m.mtime_nsec(), m.mode())
        })
        .collect();
    assert_eq!(meta_after, meta_before);
    // Still refused (not silently made the container's own), and the object was
    // not touched.
    assert_eio(&root.join("etc/app/flipped"));
    assert_eq!(fs::read(object_of(store, &f.flipped)).unwrap(), flipped_obj);
    m.umount();
    // Unmounting compacts the journal; the data files stay exactly as they were.
    let data = |s: BTreeMap<PathBuf, (u64, String)>| -> Vec<_> {
        s.into_iter()
            .filter(|(p, _)| p.starts_with("data"))
            .collect()
    };
    assert_eq!(data(private_state(store, "ct")), data(before));

    // After a remount too: the good file keeps its change, the damaged ones are
    // still the shared (refused) content.
    let m = mount_as(store, "ct", passthrough);
    let mut good = f.good.clone();
    good.push(b'!');
    assert_eq!(fs::read(m.path.join("etc/app/good")).unwrap(), good);
    assert_eio(&m.path.join("etc/app/flipped"));
    assert_eio(&m.path.join("usr/lib/truncated"));
}

#[test]
fn copy_up_of_damaged_file_fails_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    copy_up_of_damaged_file_fails(true);
}

#[test]
fn copy_up_of_damaged_file_fails_without_passthrough() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    copy_up_of_damaged_file_fails(false);
}

fn assert_verify_clean(store: &Path) {
    let out = vz_ok(store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
}

/// An ingest that finds an object present checks its size: a truncated one is
/// written again, through fresh reads (a copy of the tree) and through the stat
/// cache (the same tree again).
#[test]
fn ingest_replaces_truncated_object() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    let small = noise(20, 40_000);
    let small2 = noise(21, 50_000);
    let big = noise(22, (3 << 20) + 5);
    write_tree(
        &src,
        &[("a/small", &small), ("a/small2", &small2), ("b/big", &big)],
    );
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "one"]);
    truncate_to(&object_of(&store, &small), 100);
    truncate_to(&object_of(&store, &big), 1 << 20);

    // A copy: no stat cache entry, every file read and found present.
    let copy = t.path().join("copy");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    vz_ok(&store, &["ingest", copy.to_str().unwrap(), "--name", "two"]);
    assert_verify_clean(&store);
    assert_eq!(fs::read(object_of(&store, &small)).unwrap(), small);
    assert_eq!(fs::read(object_of(&store, &big)).unwrap(), big);
    let m = fs::metadata(object_of(&store, &big)).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o444);

    // The same tree again: its stat cache names the object, which is damaged.
    truncate_to(&object_of(&store, &small2), 0);
    vz_ok(
        &store,
        &["ingest", src.to_str().unwrap(), "--name", "three"],
    );
    assert_verify_clean(&store);
    assert_eq!(fs::read(object_of(&store, &small2)).unwrap(), small2);
}

/// verify names each damaged object's file paths (`name@version:/path`) and
/// the containers on those templates, in text and in JSON.
#[test]
fn verify_names_paths_and_containers() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    let shared = noise(30, 10_000);
    let gone = noise(31, 11_000);
    let fine = noise(32, 12_000);
    write_tree(
        &src,
        &[
            ("etc/one", &shared),
            ("usr/share/same-as-one", &shared),
            ("var/gone", &gone),
            ("fine", &fine),
        ],
    );
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "web"]);
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "db"]);
    vz_ok(&store, &["create", "c1", "c2", "--template", "web"]);
    vz_ok(&store, &["create", "c3", "--template", "db"]);
    flip_byte(&object_of(&store, &shared), 5_000);
    fs::remove_file(object_of(&store, &gone)).unwrap();
    let (hs, hg) = (hash_of(&shared), hash_of(&gone));

    let out = vz(&store, &["verify"]);
    assert!(!out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("CORRUPT object {hs} (used by: db@1, web@1)"),
        format!("MISSING object {hg} (used by: db@1, web@1)"),
        "  file web@1:/etc/one".into(),
        "  file web@1:/usr/share/same-as-one".into(),
        "  file db@1:/etc/one".into(),
        "  file db@1:/var/gone".into(),
        "  containers: c1, c2, c3".into(),
        "1 corrupt, 1 missing".into(),
        "NOT CLEAN".into(),
    ] {
        assert!(s.contains(&want), "verify output lacks {want:?}:\n{s}");
    }
    assert!(!s.contains(&hash_of(&fine)), "{s}");

    let out = vz(&store, &["verify", "--json"]);
    assert!(
        !out.status.success(),
        "verify --json of a damaged store exit 0"
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let bad = j["bad"].as_array().expect("bad[]");
    assert_eq!(bad.len(), 2, "{j:#}");
    let find = |h: &str| {
        bad.iter()
            .find(|b| b["hash"] == h)
            .unwrap_or_else(|| panic!("{h} not in {j:#}"))
    };
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not an array: {v}"))
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let b = find(&hs);
    assert_eq!(b["problem"], "corrupt");
    assert_eq!(
        strs(&b["paths"]),
        [
            "db@1:/etc/one",
            "db@1:/usr/share/same-as-one",
            "web@1:/etc/one",
            "web@1:/usr/share/same-as-one"
        ]
    );
    assert_eq!(strs(&b["containers"]), ["c1", "c2", "c3"]);
    assert_eq!(b["size"], 10_000);
    let b = find(&hg);
    assert_eq!(b["problem"], "missing");
    assert_eq!(strs(&b["paths"]), ["db@1:/var/gone", "web@1:/var/gone"]);
    assert_eq!(strs(&b["containers"]), ["c1", "c2", "c3"]);
}

/// verify --repair restores corrupt and missing objects from a directory with
/// the same content, names what it could not restore (exit 1), and a second
/// repair with a complete source leaves the store clean.
#[test]
fn verify_repair_restores_from_source() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    let flipped = noise(40, 20_000);
    let truncated = noise(41, (2 << 20) + 1);
    let gone = noise(42, 21_000);
    let lost = noise(43, 22_000); // no repair source holds it at first
    write_tree(
        &src,
        &[
            ("a/flipped", &flipped),
            ("a/truncated", &truncated),
            ("b/gone", &gone),
            ("b/lost", &lost),
            ("c/fine", &noise(44, 100)),
        ],
    );
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["create", "ct", "--template", "t"]);
    flip_byte(&object_of(&store, &flipped), 1);
    truncate_to(&object_of(&store, &truncated), 4096);
    fs::remove_file(object_of(&store, &gone)).unwrap();
    fs::remove_file(object_of(&store, &lost)).unwrap();

    // A repair source laid out differently (another node's export, say),
    // lacking one file.
    let partial = t.path().join("partial");
    write_tree(
        &partial,
        &[
            ("x/1", &flipped),
            ("x/deep/2", &truncated),
            ("3", &gone),
            ("decoy", &noise(45, 22_000)), // lost's size, other content
        ],
    );
    let out = vz(&store, &["verify", "--repair", partial.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    for h in [&flipped, &truncated, &gone] {
        assert!(
            s.contains(&format!("restored object {}", hash_of(h))),
            "{s}"
        );
    }
    assert!(
        s.contains(&format!("NOT RESTORED object {}", hash_of(&lost))),
        "{s}"
    );
    assert!(s.contains("  file t@1:/b/lost"), "{s}");
    for h in [&flipped, &truncated, &gone] {
        let p = object_of(&store, h);
        assert_eq!(&fs::read(&p).unwrap(), h);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o444);
    }
    // What is left is exactly the unrestored object.
    let out = vz(&store, &["verify", "--json"]);
    assert!(!out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bad = j["bad"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{j:#}");
    assert_eq!(bad[0]["hash"], hash_of(&lost));
    assert_eq!(bad[0]["problem"], "missing");

    // The original tree holds everything.
    let out = vz_ok(&store, &["verify", "--repair", src.to_str().unwrap()]);
    assert!(
        out.contains(&format!("restored object {}", hash_of(&lost))),
        "{out}"
    );
    assert!(!out.contains("NOT RESTORED"), "{out}");
    assert_verify_clean(&store);
    // And the container reads the restored content.
    let m = Mounted::new(&store, "ct");
    for (rel, data) in [
        ("a/flipped", &flipped),
        ("a/truncated", &truncated),
        ("b/gone", &gone),
        ("b/lost", &lost),
    ] {
        assert_eq!(&fs::read(m.path.join(rel)).unwrap(), data, "{rel}");
    }
}

/// With every read made short (a failpoint), ingest fails naming the file and
/// records nothing.
#[test]
fn ingest_never_records_a_short_read() {
    if !require_root("FUSE mounts and object files owned by root") {
        return;
    }
    if !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let first = t.path().join("first");
    write_tree(&first, &[("kept", b"kept")]);
    vz_ok(
        &store,
        &["ingest", first.to_str().unwrap(), "--name", "base"],
    );
    let templates_before = vz_ok(&store, &["templates"]);
    let objects_before = objects_state(&store);

    let src = t.path().join("src");
    write_tree(&src, &[("etc/small.conf", &noise(50, 3_000))]);
    let out = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .args(["ingest", src.to_str().unwrap(), "--name", "shorty"])
        .env("FAILPOINTS", "ingest-short-read=return")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "ingest with short reads succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("etc/small.conf"), "{err}");
    assert!(err.contains("fewer bytes than its size"), "{err}");
    assert_eq!(vz_ok(&store, &["templates"]), templates_before);
    assert!(!templates_before.contains("shorty"));
    assert_eq!(objects_state(&store), objects_before);
    assert_verify_clean(&store);
}

/// `--store` naming a regular file: init and verify say so (no "File exists").
#[test]
fn store_that_is_a_file() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("not-a-dir");
    fs::write(&f, b"hello").unwrap();
    for args in [&["init"][..], &["verify"][..]] {
        let err = vz_err(&f, args);
        assert!(
            err.contains("is a file, not a store directory"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error"), "{args:?}: {err}");
    }
    assert_eq!(fs::read(&f).unwrap(), b"hello");
}
