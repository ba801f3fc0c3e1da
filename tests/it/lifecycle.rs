//! The template lifecycle (issue 10): rebase, commit, dedup, on both backends,
//! judged on the mounted view.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// A tiny deterministic generator (the seed is printed with any failure).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

fn write_file(p: &Path, data: &[u8], mode: u32) {
    fs::write(p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Files and directories under `root` (relative, sorted), dirs first.
fn listing(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                dirs.push(r.clone());
                stack.push(r);
            } else {
                files.push(r);
            }
        }
    }
    dirs.sort();
    files.sort();
    (dirs, files)
}

/// A random old base: a few directories, files of sizes around the inline
/// limit and larger, a symlink, a hardlink pair.
fn old_tree(root: &Path, rng: &mut Rng) {
    for d in ["etc", "usr/bin", "usr/lib", "var/log", "srv/a/b"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let dirs = [
        "etc", "usr/bin", "usr/lib", "var/log", "srv/a", "srv/a/b", "",
    ];
    for i in 0..14 {
        let d = rng.pick(&dirs);
        let size = *rng.pick(&[0usize, 10, 64, 65, 3000, 70_000]);
        write_file(
            &root.join(d).join(format!("f{i}")),
            &noise(rng.next(), size),
            0o644,
        );
    }
    std::os::unix::fs::symlink("../etc/f0", root.join("usr/link")).unwrap();
    write_file(&root.join("usr/lib/hl1"), &noise(rng.next(), 5000), 0o755);
    fs::hard_link(root.join("usr/lib/hl1"), root.join("usr/lib/hl2")).unwrap();
}

/// The new base: the old one with random updates, removals and additions.
fn new_tree(root: &Path, rng: &mut Rng) {
    let (dirs, files) = listing(root);
    for f in &files {
        let p = root.join(f);
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            continue;
        }
        match rng.below(6) {
            0 => write_file(&p, &noise(rng.next(), 4000), 0o644),
            1 => fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap(),
            2 => fs::remove_file(&p).unwrap(),
            _ => {}
        }
    }
    for i in 0..4 {
        let d = root.join(rng.pick(&dirs));
        if d.exists() {
            write_file(&d.join(format!("new{i}")), &noise(rng.next(), 2000), 0o644);
        }
    }
    if rng.below(3) == 0 {
        fs::remove_dir_all(root.join("srv/a/b")).unwrap();
    }
    fs::create_dir_all(root.join("opt/new")).unwrap();
    write_file(&root.join("opt/new/tool"), &noise(rng.next(), 9000), 0o755);
}

/// Random changes made through the mounted container.
fn change_container(root: &Path, rng: &mut Rng) {
    let (dirs, files) = listing(root);
    for f in &files {
        let p = root.join(f);
        if fs::symlink_metadata(&p).unwrap().file_type().is_symlink() {
            continue;
        }
        match rng.below(9) {
            0 => write_file(&p, &noise(rng.next(), 1500), 0o644),
            1 => fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap(),
            2 => fs::remove_file(&p).unwrap(),
            3 => {
                let to = p.with_file_name(format!(
                    "{}-moved",
                    p.file_name().unwrap().to_string_lossy()
                ));
                fs::rename(&p, &to).unwrap();
            }
            _ => {}
        }
    }
    for i in 0..3 {
        let d = root.join(rng.pick(&dirs));
        if d.is_dir() {
            write_file(&d.join(format!("own{i}")), &noise(rng.next(), 800), 0o600);
        }
    }
    fs::create_dir_all(root.join("home/user")).unwrap();
    write_file(&root.join("home/user/notes"), b"mine\n", 0o600);
    if rng.below(3) == 0 && root.join("srv/a").exists() {
        fs::remove_dir_all(root.join("srv/a")).unwrap();
    }
    if rng.below(3) == 0 && root.join("var/log").exists() {
        write_file(&root.join("var/log/own.log"), b"log\n", 0o644);
    }
}

/// A snapshot without directory mtimes (they follow from the entries) and
/// without hardlink leaders of single names.
fn view(root: &Path) -> BTreeMap<Vec<u8>, Snap> {
    let mut s = snapshot(root);
    for v in s.values_mut() {
        if v.kind == "dir" {
            v.mtime = (0, 0);
            v.size = 0;
        }
    }
    s
}

/// The three-way rule of the issue, on snapshots: a path the container never
/// changed shows the new base; a changed one keeps the container's version
/// (or the new base's, when equal: the same). The container's entries keep
/// their directories; a base entry whose directory the container removed
/// stays absent.
fn expected(
    o: &BTreeMap<Vec<u8>, Snap>,
    n: &BTreeMap<Vec<u8>, Snap>,
    c: &BTreeMap<Vec<u8>, Snap>,
) -> BTreeMap<Vec<u8>, Snap> {
    let mut keys: Vec<&Vec<u8>> = o.keys().chain(n.keys()).chain(c.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut want: BTreeMap<Vec<u8>, (Snap, bool)> = BTreeMap::new();
    // A hardlink leader moves when another name goes: not a change of this path.
    let bare = |s: Option<&Snap>| {
        s.map(|s| {
            let mut s = s.clone();
            s.link_leader = None;
            s
        })
    };
    for k in keys {
        let changed = bare(c.get(k)) != bare(o.get(k));
        let (pick, own) = if changed {
            (c.get(k), c.get(k) != n.get(k))
        } else {
            (n.get(k), false)
        };
        if let Some(s) = pick {
            want.insert(k.clone(), (s.clone(), own));
        }
    }
    let parent = |k: &[u8]| -> Option<Vec<u8>> {
        if k.is_empty() {
            None
        } else {
            Some(
                k.iter()
                    .rposition(|&b| b == b'/')
                    .map_or(Vec::new(), |i| k[..i].to_vec()),
            )
        }
    };
    let own: Vec<Vec<u8>> = want
        .iter()
        .filter(|(_, (_, o))| *o)
        .map(|(k, _)| k.clone())
        .collect();
    for k in own {
        let mut a = parent(&k);
        while let Some(p) = a {
            if want.get(&p).is_some_and(|(s, _)| s.kind == "dir") {
                break;
            }
            if let Some(s) = c.get(&p) {
                want.insert(p.clone(), (s.clone(), true));
            }
            a = parent(&p);
        }
    }
    let mut out = BTreeMap::new();
    for (k, (s, _)) in want {
        match parent(&k) {
            Some(p) if out.get(&p).is_none_or(|s: &Snap| s.kind != "dir") => {}
            _ => {
                out.insert(k, s);
            }
        }
    }
    out
}

/// Leaders of hardlink groups are the first name in walk order: compare
/// groups by their member sets instead.
fn same_view(label: &str, got: &BTreeMap<Vec<u8>, Snap>, want: &BTreeMap<Vec<u8>, Snap>) {
    let strip = |m: &BTreeMap<Vec<u8>, Snap>| -> BTreeMap<Vec<u8>, Snap> {
        m.iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.link_leader = None;
                (k.clone(), v)
            })
            .collect()
    };
    let (g, w) = (strip(got), strip(want));
    for (k, v) in &w {
        match g.get(k) {
            None => panic!("{label}: {:?} missing", String::from_utf8_lossy(k)),
            Some(gv) => assert_eq!(gv, v, "{label}: {:?} differs", String::from_utf8_lossy(k)),
        }
    }
    for k in g.keys() {
        assert!(
            w.contains_key(k),
            "{label}: unexpected {:?}",
            String::from_utf8_lossy(k)
        );
    }
}

/// Property: random old and new bases and random container changes; the
/// mounted view after a rebase is the three-way result, and again after a
/// remount.
fn rebase_matches_the_three_way_model(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let (t, store) = new_store();
        let old = t.path().join("old");
        let new = t.path().join("new");
        old_tree(&old, &mut rng);
        let st = Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .unwrap();
        assert!(st.success());
        new_tree(&new, &mut rng);
        vz_ok(&store, &["ingest", old.to_str().unwrap(), "--name", "t"]);
        vz_ok(&store, &["ingest", new.to_str().unwrap(), "--name", "t"]);
        vz_ok(
            &store,
            &["create", "c", "--template", "t@1", "--backend", b.name()],
        );
        let m = Mounted::new(&store, "c");
        let o = view(&m.path);
        change_container(&m.path, &mut rng);
        let c = view(&m.path);
        m.umount();
        // The new base as a container of it shows it.
        vz_ok(
            &store,
            &[
                "create",
                "plain",
                "--template",
                "t@2",
                "--backend",
                b.name(),
            ],
        );
        let m = Mounted::new(&store, "plain");
        let n = view(&m.path);
        m.umount();
        let want = expected(&o, &n, &c);
        let dry = vz_ok(
            &store,
            &["rebase", "c", "--to", "t@2", "--dry-run", "--json"],
        );
        assert!(dry.contains("\"dry_run\": true"), "{dry}");
        let m = Mounted::new(&store, "c");
        same_view(
            &format!("seed {seed}: after the dry run"),
            &view(&m.path),
            &c,
        );
        m.umount();
        vz_ok(&store, &["rebase", "c", "--to", "t@2"]);
        let m = Mounted::new(&store, "c");
        same_view(
            &format!("seed {seed}: after the rebase"),
            &view(&m.path),
            &want,
        );
        m.umount();
        let m = Mounted::new(&store, "c");
        same_view(
            &format!("seed {seed}: after a remount"),
            &view(&m.path),
            &want,
        );
        m.umount();
        // The old version can go: the container keeps what it still uses.
        vz_ok(&store, &["templates", "rm", "t@1"]);
        vz_ok(&store, &["gc"]);
        let m = Mounted::new(&store, "c");
        same_view(&format!("seed {seed}: after gc"), &view(&m.path), &want);
        m.umount();
        let v = vz_ok(&store, &["verify"]);
        assert!(v.contains("clean"), "seed {seed}: {v}");
    }
}
both_backends!(rebase_matches_the_three_way_model);

/// A fixed scenario: what is updated, kept, re-shared and in conflict is listed
/// (text and JSON), and a mounted container is refused by name.
fn rebase_lists_what_happened_and_refuses_mounted(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    let (t, store) = new_store();
    let v1 = t.path().join("v1");
    fs::create_dir_all(v1.join("etc")).unwrap();
    write_file(&v1.join("etc/conf"), b"one\n", 0o644);
    write_file(&v1.join("etc/same"), &noise(7, 5000), 0o644);
    write_file(&v1.join("etc/untouched"), &noise(8, 5000), 0o644);
    let v2 = t.path().join("v2");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&v1)
            .arg(&v2)
            .status()
            .unwrap()
            .success()
    );
    write_file(&v2.join("etc/conf"), b"two\n", 0o644);
    write_file(&v2.join("etc/same"), &noise(9, 5000), 0o644);
    write_file(&v2.join("etc/untouched"), &noise(10, 6000), 0o644);
    set_mtime(&v2.join("etc/same"), 1_700_000_000, 0);
    vz_ok(&store, &["ingest", v1.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["ingest", v2.to_str().unwrap(), "--name", "t"]);
    vz_ok(
        &store,
        &["create", "c", "--template", "t@1", "--backend", b.name()],
    );
    let m = Mounted::new(&store, "c");
    write_file(&m.path.join("etc/conf"), b"mine\n", 0o644);
    write_file(&m.path.join("etc/same"), &noise(9, 5000), 0o644);
    set_mtime(&m.path.join("etc/same"), 1_700_000_000, 0);
    write_file(&m.path.join("etc/own"), b"own\n", 0o644);
    let err = vz_err(&store, &["rebase", "c", "--to", "t@2"]);
    assert!(err.contains("container c is mounted"), "{err}");
    m.umount();
    let out = vz_ok(&store, &["rebase", "c", "--to", "t@2", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = &j[0];
    let list = |k: &str| -> Vec<String> {
        row[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list("updated"), vec!["/etc/untouched".to_string()], "{out}");
    assert!(list("reshared").contains(&"/etc/same".to_string()), "{out}");
    assert!(list("kept").contains(&"/etc/own".to_string()), "{out}");
    let conflicts = row["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{out}");
    assert_eq!(conflicts[0]["path"], "/etc/conf");
    let m = Mounted::new(&store, "c");
    assert_eq!(fs::read(m.path.join("etc/conf")).unwrap(), b"mine\n");
    assert_eq!(fs::read(m.path.join("etc/same")).unwrap(), noise(9, 5000));
    assert_eq!(
        fs::read(m.path.join("etc/untouched")).unwrap(),
        noise(10, 6000)
    );
    m.umount();
}
both_backends!(rebase_lists_what_happened_and_refuses_mounted);

/// Kill -9 at each step of a rebase (and at random moments): the container is
/// wholly on the old base or wholly on the new one, and verify is clean.
fn rebase_killed_anywhere_is_all_or_nothing(b: Backend) {
    if !require_root("mounts") || !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let mut rng = Rng(77);
    let old = t.path().join("old");
    let new = t.path().join("new");
    old_tree(&old, &mut rng);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .unwrap()
            .success()
    );
    new_tree(&new, &mut rng);
    vz_ok(&store, &["ingest", old.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["ingest", new.to_str().unwrap(), "--name", "t"]);
    // The two bases as containers show them.
    let base_view = |v: &str| {
        let ct = format!("plain{}", v.replace('@', "-"));
        vz_ok(
            &store,
            &["create", &ct, "--template", v, "--backend", b.name()],
        );
        let m = Mounted::new(&store, &ct);
        let s = view(&m.path);
        m.umount();
        s
    };
    let (o, n) = (base_view("t@1"), base_view("t@2"));
    let cases: Vec<Option<&str>> = vec![
        Some("rebase-written=sleep(3000)"),
        Some("rebase-committed=sleep(3000)"),
        Some("settle-move=sleep(3000)"),
        None,
        None,
        None,
    ];
    for (i, fp) in cases.into_iter().enumerate() {
        let ct = format!("c{i}");
        vz_ok(
            &store,
            &["create", &ct, "--template", "t@1", "--backend", b.name()],
        );
        let m = Mounted::new(&store, &ct);
        let mut r = Rng(1000 + i as u64);
        change_container(&m.path, &mut r);
        let before = view(&m.path);
        m.umount();
        let mut cmd = Command::new(bin());
        cmd.arg("--store")
            .arg(&store)
            .args(["rebase", &ct, "--to", "t@2"]);
        if let Some(fp) = fp {
            cmd.env("FAILPOINTS", fp);
        }
        let mut child = cmd.spawn().unwrap();
        let wait = if fp.is_some() { 1500 } else { 5 + 7 * i as u64 };
        std::thread::sleep(Duration::from_millis(wait));
        let _ = child.kill();
        let _ = child.wait();
        let rec = vz_ok(&store, &["list"]);
        let on_new = rec.lines().any(|l| l.starts_with(&ct) && l.contains("t@2"));
        match fp {
            Some(f) if f.starts_with("rebase-written") => assert!(!on_new, "{f}: {rec}"),
            Some(f) => assert!(on_new, "{f}: {rec}"),
            None => {}
        }
        let m = Mounted::new(&store, &ct);
        let got = view(&m.path);
        m.umount();
        if on_new {
            same_view(
                &format!("case {i} {fp:?}: on the new base"),
                &got,
                &expected(&o, &n, &before),
            );
        } else {
            same_view(&format!("case {i} {fp:?}: on the old base"), &got, &before);
        }
        let v = vz_ok(&store, &["verify"]);
        assert!(v.contains("clean"), "case {i}: {v}");
        let private = store.join("private").join(&ct);
        assert!(
            !private.join("next").exists(),
            "case {i}: next/ left behind"
        );
    }
}
both_backends!(rebase_killed_anywhere_is_all_or_nothing);

/// A committed template exports equal to the container's view; `--rebase`
/// then empties the private area without changing the view.
fn commit_makes_a_template_of_the_view(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    let (t, store, _src) = fixture_store();
    vz_ok(
        &store,
        &["create", "app", "--template", "fx", "--backend", b.name()],
    );
    let m = Mounted::new(&store, "app");
    fs::create_dir_all(m.path.join("opt/app")).unwrap();
    write_file(&m.path.join("opt/app/bin"), &noise(50, 200_000), 0o755);
    write_file(&m.path.join("etc/hostname"), b"app\n", 0o644);
    fs::set_permissions(
        m.path.join("usr/bin/ping"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    fs::remove_file(m.path.join("usr/bin/wall")).unwrap();
    fs::hard_link(m.path.join("opt/app/bin"), m.path.join("opt/app/bin2")).unwrap();
    let before = snapshot(&m.path);
    let before_dir = t.path().join("view");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&m.path)
            .arg(&before_dir)
            .status()
            .unwrap()
            .success()
    );
    m.umount();
    let err = {
        let m = Mounted::new(&store, "app");
        let e = vz_err(&store, &["commit", "app", "--name", "apptpl"]);
        m.umount();
        e
    };
    assert!(err.contains("mounted"), "{err}");
    vz_ok(&store, &["commit", "app", "--name", "apptpl"]);
    let out = t.path().join("export");
    vz_ok(&store, &["export", "apptpl", out.to_str().unwrap()]);
    assert_same_tree(&before_dir, &out);
    let j = vz_ok(
        &store,
        &["commit", "app", "--name", "apptpl", "--rebase", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert_eq!(v["template"], "apptpl@2", "{j}");
    assert_eq!(v["rebase"]["private_files"], 0, "{j}");
    let m = Mounted::new(&store, "app");
    let after = snapshot(&m.path);
    m.umount();
    let strip = |s: BTreeMap<Vec<u8>, Snap>| -> BTreeMap<Vec<u8>, Snap> {
        s.into_iter()
            .map(|(k, mut v)| {
                if v.kind == "dir" {
                    v.mtime = (0, 0);
                    v.size = 0;
                }
                (k, v)
            })
            .collect()
    };
    same_view("after commit --rebase", &strip(after), &strip(before));
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}
both_backends!(commit_makes_a_template_of_the_view);

/// Private files several containers wrote alike, or equal to a template
/// object, become shared; the views do not change; gc keeps what they use.
fn dedup_shares_what_containers_wrote_alike(b: Backend) {
    if !require_root("mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(
        &store,
        &[
            "create",
            "a",
            "b",
            "c",
            "--template",
            "fx",
            "--backend",
            b.name(),
        ],
    );
    let mut views = Vec::new();
    for ct in ["a", "b", "c"] {
        let m = Mounted::new(&store, ct);
        fs::create_dir_all(m.path.join("opt")).unwrap();
        write_file(&m.path.join("opt/pkg.so"), &noise(60, 300_000), 0o755);
        // The same bytes as a template file, under another name.
        write_file(&m.path.join("opt/ping-copy"), &noise(4, 9_000), 0o755);
        // Rewritten with the template's own bytes.
        write_file(&m.path.join("usr/bin/big"), &noise(3, 3 << 20), 0o755);
        write_file(
            &m.path.join("opt/only-mine"),
            &noise(61 + ct.len() as u64 + ct.as_bytes()[0] as u64, 4000),
            0o644,
        );
        views.push(view(&m.path));
        m.umount();
    }
    let dry = vz_ok(&store, &["dedup", "--dry-run", "--json"]);
    let before_bytes = crate::common::du_b1(&store.join("private"));
    vz_ok(&store, &["gc"]);
    let out = vz_ok(&store, &["dedup", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dj: serde_json::Value = serde_json::from_str(&dry).unwrap();
    for (row, drow) in j["containers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(dj["containers"].as_array().unwrap())
    {
        assert_eq!(
            row["shared_again_files"], drow["shared_again_files"],
            "{out}\n{dry}"
        );
        let again = row["shared_again_files"].as_u64().unwrap();
        match b {
            // pkg.so (another container's), ping-copy (an object), big.
            Backend::Fuse => assert_eq!(again, 3, "{out}"),
            // Only bytes the image has at the same path: big.
            Backend::Kernel => assert_eq!(again, 1, "{out}"),
        }
        let left = if b == Backend::Fuse { 1 } else { 3 };
        assert_eq!(row["private_files_after"], left, "{out}");
    }
    let after_bytes = crate::common::du_b1(&store.join("private"));
    assert!(
        after_bytes * 2 < before_bytes,
        "private bytes {before_bytes} -> {after_bytes}: {out}"
    );
    vz_ok(&store, &["gc"]);
    for (i, ct) in ["a", "b", "c"].iter().enumerate() {
        let m = Mounted::new(&store, ct);
        same_view(
            &format!("{ct} after dedup and gc"),
            &view(&m.path),
            &views[i],
        );
        // Written again: copied up, the others unchanged.
        if i == 0 {
            write_file(&m.path.join("opt/pkg.so"), b"changed", 0o755);
        }
        m.umount();
    }
    let m = Mounted::new(&store, "b");
    assert_eq!(
        fs::read(m.path.join("opt/pkg.so")).unwrap(),
        noise(60, 300_000)
    );
    m.umount();
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}
both_backends!(dedup_shares_what_containers_wrote_alike);

/// gc running while dedup has published new objects but not yet recorded the
/// containers' references keeps them (the session pins them); kill -9 of a
/// dedup at that point leaves every container as it was and verify clean.
#[test]
fn dedup_beside_gc_and_killed() {
    if !require_root("mounts") || !require_failpoints() {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "a", "b", "--template", "fx"]);
    let mut views = Vec::new();
    for ct in ["a", "b"] {
        let m = Mounted::new(&store, ct);
        write_file(&m.path.join("etc/pkg"), &noise(70, 100_000), 0o644);
        views.push(view(&m.path));
        m.umount();
    }
    // Killed while its objects are published but unreferenced.
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .arg("dedup")
        .env("FAILPOINTS", "dedup-published=sleep(4000)")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let gc = vz_ok(&store, &["gc"]);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        gc.contains("removed 0 of"),
        "gc removed a pinned object: {gc}"
    );
    for (i, ct) in ["a", "b"].iter().enumerate() {
        let m = Mounted::new(&store, ct);
        same_view(
            &format!("{ct} after a killed dedup"),
            &view(&m.path),
            &views[i],
        );
        m.umount();
    }
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean") || v.contains("unreferenced"), "{v}");
    // A dedup beside gc: gc in the window, dedup completes, objects stay.
    let mut child = Command::new(bin())
        .arg("--store")
        .arg(&store)
        .arg("dedup")
        .env("FAILPOINTS", "dedup-published=sleep(2000)")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    vz_ok(&store, &["gc"]);
    assert!(child.wait().unwrap().success());
    vz_ok(&store, &["gc"]);
    for (i, ct) in ["a", "b"].iter().enumerate() {
        let m = Mounted::new(&store, ct);
        same_view(
            &format!("{ct} after dedup beside gc"),
            &view(&m.path),
            &views[i],
        );
        m.umount();
        let data = store.join("private").join(ct).join("data");
        let n = fs::read_dir(&data).unwrap().count();
        assert_eq!(n, 0, "{ct}: private files left after dedup");
    }
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}

/// A mounted FUSE container is deduped by its own daemon (a file open at the
/// time stays private until a later run); a mounted kernel container is
/// skipped and named; `report` shows the paths that differ from the base and
/// what a dedup would free.
#[test]
fn dedup_of_mounted_containers_and_the_report() {
    if !require_root("mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "a", "b", "--template", "fx"]);
    vz_ok(
        &store,
        &["create", "k", "--template", "fx", "--backend", "kernel"],
    );
    let ma = Mounted::new(&store, "a");
    let mb = Mounted::new(&store, "b");
    let mk = Mounted::new(&store, "k");
    for m in [&ma, &mb] {
        write_file(&m.path.join("etc/pkg"), &noise(80, 200_000), 0o644);
    }
    write_file(&ma.path.join("etc/pkg-open"), &noise(80, 200_000), 0o644);
    fs::remove_file(ma.path.join("etc/hostname")).unwrap();
    let held_open = fs::File::open(ma.path.join("etc/pkg-open")).unwrap();
    let before = view(&ma.path);
    let r: serde_json::Value = serde_json::from_str(&vz_ok(&store, &["report", "--json"])).unwrap();
    let changed = |r: &serde_json::Value, ct: &str| {
        r["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == ct)
            .unwrap()["changed_paths"]
            .as_u64()
            .unwrap()
    };
    // a: pkg, pkg-open, hostname removed (a directory's entries changing is
    // not a change of the directory).
    assert_eq!(changed(&r, "a"), 3, "{r}");
    assert_eq!(changed(&r, "b"), 1, "{r}");
    assert_eq!(changed(&r, "k"), 0, "{r}");
    // Three copies of one content: two would go.
    assert_eq!(r["store"]["dedup_would_free"], 400_000, "{r}");
    let out = vz_ok(&store, &["dedup", "--json"]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let row = |ct: &str| {
        j["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["container"] == ct)
            .unwrap()
            .clone()
    };
    assert_eq!(row("a")["mounted"], true, "{out}");
    assert_eq!(row("a")["shared_again_files"], 1, "{out}");
    assert_eq!(row("b")["shared_again_files"], 1, "{out}");
    assert!(
        row("k")["skipped"].as_str().unwrap().contains("kernel"),
        "{out}"
    );
    same_view("a, mounted, after dedup", &view(&ma.path), &before);
    assert_eq!(
        fs::read(mb.path.join("etc/pkg")).unwrap(),
        noise(80, 200_000)
    );
    drop(held_open);
    let out = vz_ok(&store, &["dedup", "a", "--json"]);
    assert!(out.contains("\"shared_again_files\": 1"), "{out}");
    let data = store.join("private/a/data");
    assert_eq!(
        fs::read_dir(&data).unwrap().count(),
        0,
        "a still has private files"
    );
    drop(mk);
    ma.umount();
    mb.umount();
    let m = Mounted::new(&store, "a");
    same_view("a after a remount", &view(&m.path), &before);
    m.umount();
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}

/// Regressions of the adversarial pass. A kernel container that wrote a
/// template hardlink group, moved to a base where another name joins that
/// group and back: a file it never touched shows its template bytes again.
#[test]
fn kernel_rebase_round_trip_with_template_hardlink_groups() {
    if !require_root("kernel mounts") {
        return;
    }
    let (t, store) = new_store();
    let (ha, hb) = (t.path().join("ha"), t.path().join("hb"));
    fs::create_dir_all(&ha).unwrap();
    fs::create_dir_all(&hb).unwrap();
    fs::write(ha.join("a"), b"ab content\n").unwrap();
    fs::hard_link(ha.join("a"), ha.join("b")).unwrap();
    fs::write(ha.join("c"), b"c content\n").unwrap();
    fs::write(hb.join("a"), b"ac content\n").unwrap();
    fs::hard_link(hb.join("a"), hb.join("c")).unwrap();
    fs::write(hb.join("b"), b"b new\n").unwrap();
    vz_ok(&store, &["ingest", ha.to_str().unwrap(), "--name", "h"]);
    vz_ok(&store, &["ingest", hb.to_str().unwrap(), "--name", "h"]);
    vz_ok(
        &store,
        &["create", "k", "--template", "h@1", "--backend", "kernel"],
    );
    let m = Mounted::new(&store, "k");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path.join("a"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"container write\n").unwrap();
    drop(f);
    m.umount();
    vz_ok(&store, &["rebase", "k", "--to", "h@2"]);
    vz_ok(&store, &["rebase", "k", "--to", "h@1"]);
    let m = Mounted::new(&store, "k");
    assert_eq!(fs::read(m.path.join("c")).unwrap(), b"c content\n");
    assert_eq!(
        fs::read(m.path.join("a")).unwrap(),
        b"ab content\ncontainer write\n"
    );
    assert_eq!(
        fs::read(m.path.join("b")).unwrap(),
        b"ab content\ncontainer write\n"
    );
    m.umount();
}

/// Dedup never drops a container's private bytes for a damaged object: the
/// container's copy replaces it (two holders), and the file reads right.
#[test]
fn dedup_does_not_trust_a_damaged_object() {
    if !require_root("mounts") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "a", "b", "--template", "fx"]);
    let bytes = noise(4, 9_000); // usr/bin/ping's bytes: an object
    for ct in ["a", "b"] {
        let m = Mounted::new(&store, ct);
        write_file(&m.path.join("etc/copy"), &bytes, 0o644);
        m.umount();
    }
    let obj = store.join("objects").join({
        let h = blake3::hash(&bytes).to_hex().to_string();
        format!("{}/{}", &h[..2], &h[2..])
    });
    let mut damaged = bytes.clone();
    damaged[0] ^= 1;
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&obj, &damaged).unwrap();
    fs::set_permissions(&obj, fs::Permissions::from_mode(0o444)).unwrap();
    vz_ok(&store, &["dedup"]);
    assert!(
        fs::read(&obj).unwrap() == bytes,
        "the object was not replaced by the good copy"
    );
    let m = Mounted::new(&store, "a");
    assert!(
        fs::read(m.path.join("etc/copy")).unwrap() == bytes,
        "etc/copy reads wrong"
    );
    m.umount();
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}

/// Injected EIO at each step of a rebase, of a dedup and of a commit: the
/// command fails naming the error, and the container is wholly before or
/// (once its commit point passed) wholly after; verify stays clean.
fn lifecycle_steps_failing_with_eio(b: Backend) {
    if !require_root("mounts") || !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let mut rng = Rng(91);
    let (old, new) = (t.path().join("old"), t.path().join("new"));
    old_tree(&old, &mut rng);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .unwrap()
            .success()
    );
    new_tree(&new, &mut rng);
    vz_ok(&store, &["ingest", old.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["ingest", new.to_str().unwrap(), "--name", "t"]);
    for (i, (fp, after_commit)) in [
        ("rebase-written=return(EIO)", false),
        ("rebase-committed=return(EIO)", true),
        ("settle-move=return(EIO)", true),
    ]
    .into_iter()
    .enumerate()
    {
        let ct = format!("c{i}");
        vz_ok(
            &store,
            &["create", &ct, "--template", "t@1", "--backend", b.name()],
        );
        let m = Mounted::new(&store, &ct);
        change_container(&m.path, &mut Rng(500 + i as u64));
        let before = view(&m.path);
        m.umount();
        let err = vz_env_err(
            &store,
            &[("FAILPOINTS", fp)],
            &["rebase", &ct, "--to", "t@2"],
        );
        assert!(err.contains("Input/output error"), "{fp}: {err}");
        let list = vz_ok(&store, &["list"]);
        let on_new = list
            .lines()
            .any(|l| l.starts_with(&ct) && l.contains("t@2"));
        assert_eq!(on_new, after_commit, "{fp}: {list}");
        let m = Mounted::new(&store, &ct);
        let got = view(&m.path);
        m.umount();
        if !after_commit {
            same_view(&format!("{fp}: old"), &got, &before);
        }
        assert!(
            !store.join("private").join(&ct).join("next").exists(),
            "{fp}: next/ left"
        );
        let v = vz_ok(&store, &["verify"]);
        assert!(v.contains("clean"), "{fp}: {v}");
    }
    // Dedup failing after its objects are published: nothing changed.
    vz_ok(
        &store,
        &[
            "create",
            "d1",
            "d2",
            "--template",
            "t@1",
            "--backend",
            b.name(),
        ],
    );
    let mut views = Vec::new();
    for ct in ["d1", "d2"] {
        let m = Mounted::new(&store, ct);
        write_file(&m.path.join("etc/same"), &noise(93, 50_000), 0o644);
        views.push(view(&m.path));
        m.umount();
    }
    let err = vz_env_err(
        &store,
        &[("FAILPOINTS", "dedup-published=return(EIO)")],
        &["dedup", "d1", "d2"],
    );
    assert!(err.contains("Input/output error"), "{err}");
    for (ct, v) in ["d1", "d2"].iter().zip(&views) {
        let m = Mounted::new(&store, ct);
        same_view(&format!("{ct} after a failed dedup"), &view(&m.path), v);
        m.umount();
    }
    // Commit failing at the catalog write: no template, nothing changed.
    let err = vz_env_err(
        &store,
        &[("FAILPOINTS", "catalog-commit=return(ENOSPC)")],
        &["commit", "d1", "--name", "app"],
    );
    assert!(err.contains("No space left"), "{err}");
    assert!(
        !vz_ok(&store, &["templates"]).contains("app@"),
        "a template was committed"
    );
    let v = vz_ok(&store, &["verify"]);
    assert!(v.contains("clean"), "{v}");
}
both_backends!(lifecycle_steps_failing_with_eio);

/// A full disk: rebase, dedup and commit either succeed or fail cleanly; the
/// container shows its old or its new view, and verify is clean.
#[test]
fn lifecycle_on_a_full_disk() {
    if !require_root("loop devices") {
        return;
    }
    let lfs = LoopFs::new(64);
    let store = lfs.path.join("store");
    vz_ok(&store, &["init"]);
    let t = tempfile::tempdir().unwrap();
    let mut rng = Rng(97);
    let (old, new) = (t.path().join("old"), t.path().join("new"));
    old_tree(&old, &mut rng);
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&old)
            .arg(&new)
            .status()
            .unwrap()
            .success()
    );
    new_tree(&new, &mut rng);
    vz_ok(&store, &["ingest", old.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["ingest", new.to_str().unwrap(), "--name", "t"]);
    vz_ok(&store, &["create", "a", "b", "--template", "t@1"]);
    let mut views = Vec::new();
    for ct in ["a", "b"] {
        let m = Mounted::new(&store, ct);
        change_container(&m.path, &mut Rng(700));
        write_file(&m.path.join("etc/same"), &noise(98, 200_000), 0o644);
        views.push(view(&m.path));
        m.umount();
    }
    let filler = fill_up(&lfs.path);
    for args in [
        vec!["dedup"],
        vec!["commit", "a", "--name", "app"],
        vec!["rebase", "a", "b", "--to", "t@2"],
    ] {
        let out = vz(&store, &args);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
        for (ct, before) in ["a", "b"].iter().zip(&views) {
            let list = vz_ok(&store, &["list"]);
            let moved = list.lines().any(|l| l.starts_with(ct) && l.contains("t@2"));
            let m = Mounted::new(&store, ct);
            let got = view(&m.path);
            m.umount();
            if !moved {
                same_view(&format!("{args:?}: {ct}"), &got, before);
            }
            assert!(
                !store.join("private").join(ct).join("next").exists(),
                "{args:?}: next/ left"
            );
        }
        let v = vz_ok(&store, &["verify"]);
        assert!(v.contains("clean"), "{args:?}: {v}");
    }
    fs::remove_file(filler).unwrap();
}

/// Run vzstore with `env`, requiring it to fail; its stderr.
fn vz_env_err(store: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = vz_env(store, env, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{args:?} with {env:?} succeeded: {err}"
    );
    err
}
