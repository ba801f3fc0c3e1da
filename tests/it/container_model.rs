//! Property test: random file operations applied to a mounted container and to a
//! plain directory (an export of the same template on the host file system) give
//! the same result for every operation (success or the same errno) and leave
//! identical trees (contents, sizes, modes, kinds, link counts, symlink targets).

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;

use crate::common::*;

const PATHS: &[&str] = &[
    "f0", "f1", "f2", "d0", "d0/g0", "d0/g1", "d1", "d1/h0", "n0", "d0/d2",
];

#[derive(Clone, Debug)]
enum Op {
    Write {
        p: usize,
        off: u64,
        len: usize,
        seed: u64,
    },
    Truncate {
        p: usize,
        len: u64,
    },
    Unlink {
        p: usize,
    },
    Mkdir {
        p: usize,
    },
    Rmdir {
        p: usize,
    },
    Rename {
        a: usize,
        b: usize,
    },
    Chmod {
        p: usize,
        mode: u32,
    },
    Link {
        a: usize,
        b: usize,
    },
    Symlink {
        p: usize,
        target: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        (p.clone(), 0u64..40_000, 1usize..9000, any::<u64>())
            .prop_map(|(p, off, len, seed)| Op::Write { p, off, len, seed }),
        (p.clone(), 0u64..50_000).prop_map(|(p, len)| Op::Truncate { p, len }),
        p.clone().prop_map(|p| Op::Unlink { p }),
        p.clone().prop_map(|p| Op::Mkdir { p }),
        p.clone().prop_map(|p| Op::Rmdir { p }),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Rename { a, b }),
        (p.clone(), 0o400u32..0o777).prop_map(|(p, mode)| Op::Chmod { p, mode }),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link { a, b }),
        (p.clone(), p).prop_map(|(p, target)| Op::Symlink { p, target }),
    ]
}

/// Apply one op under `root`; the outcome is Ok or the errno.
fn apply(root: &Path, op: &Op) -> Result<(), i32> {
    let j = |i: usize| root.join(PATHS[i]);
    let r: std::io::Result<()> = match *op {
        Op::Write { p, off, len, seed } => OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(j(p))
            .and_then(|f| f.write_all_at(&noise(seed, len), off)),
        Op::Truncate { p, len } => OpenOptions::new()
            .write(true)
            .open(j(p))
            .and_then(|f| f.set_len(len)),
        Op::Unlink { p } => fs::remove_file(j(p)),
        Op::Mkdir { p } => fs::create_dir(j(p)),
        Op::Rmdir { p } => fs::remove_dir(j(p)),
        Op::Rename { a, b } => fs::rename(j(a), j(b)),
        Op::Chmod { p, mode } => {
            // Keep the owner able to work in directories.
            fs::set_permissions(j(p), fs::Permissions::from_mode(mode | 0o700))
        }
        Op::Link { a, b } => fs::hard_link(j(a), j(b)),
        Op::Symlink { p, target } => std::os::unix::fs::symlink(PATHS[target], j(p)),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// Snapshot without times (they differ between the two runs by nature).
fn shape(root: &Path) -> BTreeMap<Vec<u8>, Snap> {
    snapshot(root)
        .into_iter()
        .map(|(k, mut v)| {
            v.mtime = (0, 0);
            (k, v)
        })
        .collect()
}

fn template(dir: &Path) {
    fs::create_dir_all(dir.join("d0")).unwrap();
    fs::create_dir_all(dir.join("d1")).unwrap();
    fs::write(dir.join("f0"), noise(1, 30_000)).unwrap();
    fs::write(dir.join("f1"), noise(2, 100)).unwrap();
    fs::write(dir.join("d0/g0"), noise(3, 5000)).unwrap();
    fs::write(dir.join("d1/h0"), noise(1, 30_000)).unwrap(); // same content as f0
}

fn mount_behaves_like_a_plain_directory(b: Backend) {
    if !require_root("mounts containers with FUSE") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    template(&src);
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "m"]);
    let objects_before = objects_state(&store);
    let case = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            let n = case.get();
            case.set(n + 1);
            let name = format!("p{n}");
            let plain = t.path().join(format!("plain{n}"));
            vz_ok(&store, &["export", "m", plain.to_str().unwrap()]);
            vz_ok(
                &store,
                &["create", &name, "--template", "m", "--backend", b.name()],
            );
            let m = Mounted::new(&store, &name);
            for (i, op) in ops.iter().enumerate() {
                let want = apply(&plain, op);
                let got = apply(&m.path, op);
                prop_assert_eq!(got, want, "op {} {:?} differs", i, op);
            }
            prop_assert_eq!(shape(&m.path), shape(&plain));
            m.umount();
            // And the same after a remount (state was saved and replayed).
            let m = Mounted::new(&store, &name);
            prop_assert_eq!(shape(&m.path), shape(&plain));
            m.umount();
            vz_ok(&store, &["destroy", &name]);
            fs::remove_dir_all(&plain).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(objects_state(&store), objects_before);
}
both_backends!(mount_behaves_like_a_plain_directory);
