//! Invariant 5: SIGKILL at random points of ingest and gc never leaves a store that
//! verify rejects; at worst garbage that gc removes.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn tree(root: &std::path::Path, seed: u64) {
    for d in 0..20 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            let n = (seed * 7 + d * 40 + f) as usize;
            fs::write(
                dir.join(format!("f{f}")),
                noise(seed * 100_000 + d * 40 + f, 1000 + (n * 997) % 60_000),
            )
            .unwrap();
        }
    }
    fs::write(root.join("big"), noise(seed + 77, 8 << 20)).unwrap();
}

fn kill_after(store: &std::path::Path, args: &[&str], delay: Duration) -> bool {
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    false
}

#[test]
fn sigkill_during_ingest_and_gc_leaves_consistent_store() {
    let (t, store) = new_store();
    let srcs: Vec<_> = (0..3)
        .map(|i| {
            let p = t.path().join(format!("src{i}"));
            tree(&p, i);
            p
        })
        .collect();
    // Time one full ingest to spread kill points over its whole duration.
    let start = Instant::now();
    vz_ok(
        &store,
        &["ingest", srcs[0].to_str().unwrap(), "--name", "base"],
    );
    let full = start.elapsed().as_millis().max(20) as u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut completed = 0;
    for round in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % (full * 2));
        let src = &srcs[round % 3];
        let name = format!("t{}", round % 3);
        let done = if round % 5 == 4 {
            vz(&store, &["templates", "rm", "--all", &name]); // may not exist yet
            kill_after(&store, &["gc"], delay)
        } else {
            kill_after(
                &store,
                &["ingest", src.to_str().unwrap(), "--name", &name],
                delay,
            )
        };
        completed += done as u32;
        let out = vz(&store, &["verify"]);
        assert!(
            out.status.success(),
            "round {round} (killed after {delay:?}): verify failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(completed < 40, "no run was ever killed");
    vz_ok(&store, &["gc"]);
    let out = vz_ok(&store, &["verify"]);
    assert!(
        out.contains("0 unreferenced objects, 0 unused images, 0 crashed sessions"),
        "{out}"
    );
    let e = t.path().join("e");
    vz_ok(&store, &["export", "base", e.to_str().unwrap()]);
    assert_same_tree(&srcs[0], &e);
}
