//! Dedup across templates and the accounting that reports it.

use std::fs;
use std::path::Path;

use crate::common::*;

fn json(store: &Path) -> serde_json::Value {
    serde_json::from_str(&vz_ok(store, &["report", "--json"])).unwrap()
}

#[test]
fn two_templates_share_content() {
    let (t, store) = new_store();
    let a = t.path().join("a");
    let b = t.path().join("b");
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    // 40 shared files of 100 KB, plus 10 exclusive files each.
    for i in 0..40 {
        let data = noise(i, 100_000);
        fs::write(a.join(format!("s{i}")), &data).unwrap();
        fs::write(b.join(format!("other-name-{i}")), &data).unwrap();
    }
    for i in 0..10 {
        fs::write(a.join(format!("x{i}")), noise(1000 + i, 50_000)).unwrap();
        fs::write(b.join(format!("y{i}")), noise(2000 + i, 70_000)).unwrap();
    }
    vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    let after_a = json(&store)["store"]["stored_bytes"].as_u64().unwrap();
    let out = vz_ok(&store, &["ingest", b.to_str().unwrap(), "--name", "b"]);
    assert!(out.contains("10 new objects"), "{out}");
    let r = json(&store);
    let after_b = r["store"]["stored_bytes"].as_u64().unwrap();
    // b adds only its 10 exclusive files (700 KB), within block rounding.
    let growth = after_b - after_a;
    assert!(
        (700_000..=700_000 + 10 * 4096).contains(&growth),
        "growth {growth}"
    );

    // Figures agree with du.
    assert_eq!(after_b, du_b1(&store.join("objects")));
    // Metadata: the catalog and the kernel images.
    assert_eq!(
        r["store"]["metadata_bytes"].as_u64().unwrap(),
        du_b1(&store.join("meta")) + du_b1(&store.join("images"))
    );
    let ta = &r["templates"][0];
    let tb = &r["templates"][1];
    assert_eq!(ta["name"], "a");
    assert_eq!(ta["version"], 1);
    assert_eq!(ta["logical_bytes"], 40 * 100_000 + 10 * 50_000);
    assert_eq!(ta["shared_bytes"], 40 * 100_000);
    assert_eq!(tb["shared_bytes"], 40 * 100_000);
    // Exclusive: allocated bytes of the 10 own objects (50 KB -> 52 KiB each on ext4).
    let ex_a = ta["exclusive_bytes"].as_u64().unwrap();
    assert!(
        (500_000..=500_000 + 10 * 4096).contains(&ex_a),
        "exclusive {ex_a}"
    );
    assert_eq!(
        r["store"]["logical_bytes"],
        2 * 40 * 100_000 + 500_000 + 700_000
    );

    // Removing a and collecting frees exactly a's exclusive bytes.
    vz_ok(&store, &["templates", "rm", "a"]);
    let gc = vz_ok(&store, &["gc"]);
    assert!(gc.contains("removed 10 of 60 objects"), "{gc}");
    let after_rm = json(&store)["store"]["stored_bytes"].as_u64().unwrap();
    assert_eq!(after_b - after_rm, ex_a);
    vz_ok(&store, &["verify"]);
}

#[test]
fn reingest_unchanged_skips_rehash() {
    let (t, store) = new_store();
    let a = t.path().join("a");
    fs::create_dir_all(&a).unwrap();
    for i in 0..30 {
        fs::write(a.join(format!("f{i}")), noise(i, 10_000)).unwrap();
    }
    vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    let out = vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    assert!(out.contains("30 unchanged files not re-read"), "{out}");
    assert!(out.contains("0 new objects"), "{out}");
    // A changed file is re-read (its ctime moved) and stored.
    fs::write(a.join("f3"), b"changed").unwrap();
    let out = vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    assert!(out.contains("29 unchanged files not re-read"), "{out}");
    assert!(out.contains("1 new objects"), "{out}");
    let e = t.path().join("e");
    vz_ok(&store, &["export", "a@3", e.to_str().unwrap()]);
    assert_same_tree(&a, &e);
}
