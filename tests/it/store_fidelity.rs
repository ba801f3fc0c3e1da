//! Invariant 6: what is ingested exports back identical, bytes and metadata.

use std::os::unix::fs::MetadataExt;

use crate::common::*;

#[test]
fn fixture_exports_identical() {
    if !require_root("the fixture has device nodes, other owners and trusted xattrs") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    build_fixture(&src);
    let out = vz(
        &store,
        &["ingest", src.to_str().unwrap(), "--name", "fixture"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("socket skipped"),
        "no socket warning: {stderr}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("ingested fixture@1"), "{summary}");

    let dest = t.path().join("export");
    vz_ok(&store, &["export", "fixture", dest.to_str().unwrap()]);
    assert_same_tree(&src, &dest);

    // Sparse stays sparse: in the store and in the export.
    let m = std::fs::metadata(dest.join("var-sparse.img")).unwrap();
    assert_eq!(m.len(), 1 << 30);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "export not sparse: {} bytes allocated",
        m.blocks() * 512
    );
    let rep: serde_json::Value =
        serde_json::from_str(&vz_ok(&store, &["report", "--json"])).unwrap();
    let stored = rep["store"]["stored_bytes"].as_u64().unwrap();
    assert!(stored < 32 << 20, "store not sparse: {stored} bytes stored");

    // Identical content stored once: big and big-copy share one object.
    assert_eq!(rep["templates"][0]["name"], "fixture");
    let logical = rep["templates"][0]["logical_bytes"].as_u64().unwrap();
    assert!(logical > (1 << 30) + (6 << 20));
}

#[test]
fn export_refuses_non_empty_destination() {
    let (t, store) = new_store();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "t"]);
    let err = vz_err(&store, &["export", "t", src.to_str().unwrap()]);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read(src.join("f")).unwrap(), b"x");
    let err = vz_err(
        &store,
        &["export", "nope", t.path().join("e").to_str().unwrap()],
    );
    assert!(err.contains("template nope not found"), "{err}");
}

#[test]
fn versions_and_removal() {
    let (t, store) = new_store();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"one").unwrap();
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "deb"]);
    std::fs::write(src.join("f"), b"two").unwrap();
    let out = vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "deb"]);
    assert!(out.contains("deb@2"), "{out}");
    let list = vz_ok(&store, &["templates"]);
    assert!(list.contains("deb@1") && list.contains("deb@2"), "{list}");

    let e1 = t.path().join("e1");
    vz_ok(&store, &["export", "deb@1", e1.to_str().unwrap()]);
    assert_eq!(std::fs::read(e1.join("f")).unwrap(), b"one");
    let e2 = t.path().join("e2");
    vz_ok(&store, &["export", "deb", e2.to_str().unwrap()]);
    assert_eq!(std::fs::read(e2.join("f")).unwrap(), b"two");

    let err = vz_err(&store, &["templates", "rm", "deb"]);
    assert!(err.contains("has 2 versions"), "{err}");
    vz_ok(&store, &["templates", "rm", "deb@1"]);
    let list = vz_ok(&store, &["templates"]);
    assert!(!list.contains("deb@1") && list.contains("deb@2"), "{list}");
    vz_ok(&store, &["templates", "rm", "deb"]);
    assert!(!vz_ok(&store, &["templates"]).contains("deb@"));
}
