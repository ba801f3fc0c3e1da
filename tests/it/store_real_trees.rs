//! Real data: a debootstrap Debian root and the host's own /usr.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A debootstrap `minbase` bookworm root, built once and cached (network needed the
/// first time). `VZSTORE_DEBIAN_MINBASE` points at an existing one.
pub fn debian_minbase() -> PathBuf {
    if let Ok(p) = std::env::var("VZSTORE_DEBIAN_MINBASE") {
        return PathBuf::from(p);
    }
    let dir = PathBuf::from("/var/cache/vzstore/debian-minbase");
    if dir.join("usr/bin/dpkg").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let st = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .status()
        .expect("debootstrap is not installed (tools/setup.sh installs it)");
    assert!(st.success(), "debootstrap of bookworm minbase failed");
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rm -f {}/var/cache/apt/archives/*.deb",
            dir.display()
        ))
        .status();
    dir
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
    round_trip(&debian_minbase(), "debian-minbase");
}

#[test]
fn host_usr_round_trip() {
    round_trip(Path::new("/usr/share/perl5"), "host-perl5");
    round_trip(Path::new("/usr/bin"), "host-usr-bin");
}
