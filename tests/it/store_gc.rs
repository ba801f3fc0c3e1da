//! gc keeps everything referenced, frees the rest, and is safe beside ingests.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vzstore::ingest;
use vzstore::store::{Store, gc, verify};

use crate::common::*;

#[test]
fn gc_keeps_referenced_frees_rest() {
    let (t, store) = new_store();
    let a = t.path().join("a");
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("keep"), noise(1, 9000)).unwrap();
    fs::write(a.join("drop"), noise(2, 9000)).unwrap();
    vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    fs::remove_file(a.join("drop")).unwrap();
    vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    let out = vz_ok(&store, &["gc"]);
    assert!(out.contains("removed 0 of 2 objects"), "{out}");
    vz_ok(&store, &["templates", "rm", "a@1"]);
    let out = vz_ok(&store, &["gc"]);
    assert!(out.contains("removed 1 of 2 objects"), "{out}");
    let e = t.path().join("e");
    vz_ok(&store, &["export", "a", e.to_str().unwrap()]);
    assert_same_tree(&a, &e);
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

/// gc in a loop while ingests keep adding and removing versions: no committed
/// template ever loses an object.
#[test]
fn gc_concurrent_with_ingest() {
    let (t, store_path) = new_store();
    let store = Store::open(&store_path).unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..200 {
        fs::write(
            src.join(format!("f{i}")),
            noise(i % 50, 2000 + (i % 50) as usize),
        )
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let gc_thread = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                gc::gc(&store).unwrap();
                runs += 1;
            }
            runs
        })
    };
    for round in 0..15 {
        // Alternate content so objects keep becoming garbage and coming back.
        fs::write(src.join("var"), noise(10_000 + round % 3, 4000)).unwrap();
        let s = ingest::ingest_dir(&store, &src, "t", &ingest::NoProgress).unwrap();
        if round > 0 {
            let db = vzstore::store::catalog::Catalog::open(&store).unwrap();
            db.remove_template("t", s.record.version - 1).unwrap();
        }
        let e = t.path().join(format!("e{round}"));
        vz_ok(&store_path, &["export", "t", e.to_str().unwrap()]);
        assert_same_tree(&src, &e);
        fs::remove_dir_all(&e).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let runs = gc_thread.join().unwrap();
    assert!(runs > 0);
    let rep = verify::verify(&store).unwrap();
    assert!(rep.is_clean(), "{rep:?}");
}

/// Regression: a stat-cache hit whose object gc had deleted claimed the hash,
/// so the re-read file was never staged and the manifest named a missing object.
#[test]
fn stat_cache_hit_on_collected_object_is_restaged() {
    let (t, store) = new_store();
    let a = t.path().join("a");
    fs::create_dir_all(&a).unwrap();
    for i in 0..20 {
        fs::write(a.join(format!("f{i}")), noise(i, 3000)).unwrap();
    }
    vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    vz_ok(&store, &["templates", "rm", "a"]);
    assert!(vz_ok(&store, &["gc"]).contains("removed 20 of 20 objects"));
    let out = vz_ok(&store, &["ingest", a.to_str().unwrap(), "--name", "a"]);
    assert!(out.contains("20 new objects"), "{out}");
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
    let e = t.path().join("e");
    vz_ok(&store, &["export", "a", e.to_str().unwrap()]);
    assert_same_tree(&a, &e);
}
