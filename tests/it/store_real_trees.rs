//! Real data: a debootstrap Debian root and the host's own /usr.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The debootstrap `minbase` bookworm root (`VZSTORE_DEBIAN_MINBASE` points at an
/// existing one).
pub fn debian_minbase() -> PathBuf {
    if let Ok(p) = std::env::var("VZSTORE_DEBIAN_MINBASE") {
        return PathBuf::from(p);
    }
    debian_root("debian-minbase", None, "usr/bin/dpkg")
}

fn round_trip(src: &Path, name: &str) {
    let (t, store) = new_store();
    let out = vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", name]);
    assert!(out.contains(&format!("ingested {name}@1")), "{out}");
    let dest = t.path().join("export");
    vz_ok(&store, &["export", name, dest.to_str().unwrap()]);
    assert_same_tree(src, &dest);
    let again = vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", name]);
    assert!(again.contains(" 0 new objects"), "{again}");
    let out = vz_ok(&store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
    // Metadata stays small next to the data.
    let r: serde_json::Value = serde_json::from_str(&vz_ok(&store, &["report", "--json"])).unwrap();
    let logical = r["store"]["logical_bytes"].as_u64().unwrap();
    let meta = r["store"]["metadata_bytes"].as_u64().unwrap();
    if logical > 100 << 20 {
        // RocksDB has a fixed overhead of some 100 KB, so only big trees are judged.
        assert!(
            meta * 50 < logical,
            "metadata {meta} is over 2% of logical {logical}"
        );
    }
}

#[test]
fn debian_minbase_round_trip() {
    if !require_root("debootstrap; the tree has files only root may read or own") {
        return;
    }
    round_trip(&debian_minbase(), "debian-minbase");
}

#[test]
fn host_usr_round_trip() {
    if !require_root("the export gives root's files back to root") {
        return;
    }
    round_trip(Path::new("/usr/share/perl5"), "host-perl5");
    round_trip(Path::new("/usr/bin"), "host-usr-bin");
}
