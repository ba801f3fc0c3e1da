//! Push and pull through a real S3 server (Garage, one private instance per
//! test): round trips, only missing objects moving, resuming, lazy pull,
//! containers moving between stores, remote gc beside a push, and the faults
//! (unreachable server, wrong credentials, lying or missing objects, a server
//! killed mid-transfer, a full disk, two nodes at once).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::garage::*;

/// `n` files of `size` incompressible bytes, plus the fixture.
fn big_tree(root: &Path, n: usize, size: usize, seed: u64) {
    build_fixture(root);
    let d = root.join("big");
    fs::create_dir_all(&d).unwrap();
    for i in 0..n {
        fs::write(d.join(format!("f{i:04}")), noise(seed + i as u64, size)).unwrap();
    }
}

/// A store with template `name` from `src`, and remote `fleet` on `g`.
fn node(g: &Garage, src: Option<(&Path, &str)>) -> (tempfile::TempDir, std::path::PathBuf) {
    let (t, s) = new_store();
    if let Some((src, name)) = src {
        vz_ok(&s, &["ingest", src.to_str().unwrap(), "--name", name]);
    }
    g.add_remote(&s, "fleet", "pfx");
    (t, s)
}

fn export(store: &Path, what: &str, dest: &Path) {
    vz_ok(store, &["export", what, dest.to_str().unwrap()]);
}

fn template_count(store: &Path) -> usize {
    let v = json(&vz_ok(store, &["templates", "--json"]));
    v.as_array().map_or(0, |a| a.len())
}

fn object_count(store: &Path) -> usize {
    objects_state(store).len()
}

fn verify_clean(store: &Path) {
    vz_ok(store, &["verify"]);
}

#[test]
fn push_then_pull_gives_the_same_template_and_only_missing_objects_move() {
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_fixture(&src);
    let (_a, a) = node(&g, Some((&src, "fx")));
    let first = json(&vzr_ok(&a, &["push", "fx", "fleet", "--json"]));
    assert!(first["objects_moved"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["objects_skipped"], 0);
    // The document is last and names only objects the bucket holds.
    assert_eq!(
        g.keys("pfx/templates/"),
        vec!["pfx/templates/fx/1".to_string()]
    );
    assert!(g.keys("pfx/objects/").len() as u64 >= first["objects_moved"].as_u64().unwrap());

    // A second push moves nothing.
    let second = json(&vzr_ok(&a, &["push", "fx@1", "fleet", "--json"]));
    assert_eq!(second["already_there"], true, "{second}");
    assert_eq!(second["objects_moved"], 0);
    assert_eq!(second["wire_bytes"], 0);

    let (_b, b) = node(&g, None);
    let pulled = json(&vzr_ok(&b, &["pull", "fx", "fleet", "--json"]));
    assert_eq!(pulled["pulled"], "fx@1");
    assert_eq!(pulled["objects_moved"], first["objects_moved"]);
    verify_clean(&b);
    // The fixture's 1 GiB sparse file arrives as a sparse object.
    assert!(du_b1(&b.join("objects")) < 64 << 20, "holes were filled in");
    let (ea, eb) = (t.path().join("ea"), t.path().join("eb"));
    export(&a, "fx@1", &ea);
    export(&b, "fx@1", &eb);
    assert_same_tree(&ea, &eb);
    let shown = vz_ok(&b, &["templates"]);
    assert!(shown.contains("fx"), "{shown}");
    // Pulling again moves nothing.
    let again = json(&vzr_ok(&b, &["pull", "fx@1", "fleet", "--json"]));
    assert_eq!(again["already_there"], true);

    // A new version sharing most content: only its new objects move.
    fs::write(src.join("added.bin"), noise(77, 300_000)).unwrap();
    vz_ok(&a, &["ingest", src.to_str().unwrap(), "--name", "fx"]);
    let v2 = json(&vzr_ok(&a, &["push", "fx@2", "fleet", "--json"]));
    assert_eq!(v2["objects_moved"], 1, "{v2}");
    assert_eq!(v2["bytes_moved"], 300_000);
    let p2 = json(&vzr_ok(&b, &["pull", "fx", "fleet", "--json"]));
    assert_eq!(p2["pulled"], "fx@2");
    assert_eq!(p2["objects_moved"], 1, "{p2}");
    verify_clean(&b);

    let ls = vzr_ok(&b, &["remote", "ls", "fleet"]);
    assert!(ls.contains("fx@1") && ls.contains("fx@2"), "{ls}");
}

#[test]
fn compressible_objects_travel_compressed_and_come_back_exact() {
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let text: Vec<u8> = (0..2_000_000u32)
        .map(|i| b"abcdefgh"[(i % 7) as usize])
        .collect();
    fs::write(src.join("text"), &text).unwrap();
    // Larger than the whole-object limit: sent in parts, compressed.
    let big: Vec<u8> = (0..40_000_000u32).map(|i| (i / 1000) as u8).collect();
    fs::write(src.join("big"), &big).unwrap();
    fs::write(src.join("noise"), noise(3, 20_000_000)).unwrap();
    let (_a, a) = node(&g, Some((&src, "c")));
    let s = json(&vzr_ok(&a, &["push", "c", "fleet", "--json"]));
    let keys = g.keys("pfx/objects/");
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".zst")).count(),
        2,
        "{keys:?}"
    );
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(s["wire_bytes"].as_u64().unwrap() < 25_000_000, "{s}");
    let (_b, b) = node(&g, None);
    vzr_ok(&b, &["pull", "c", "fleet"]);
    verify_clean(&b);
    let e = t.path().join("e");
    export(&b, "c", &e);
    assert_eq!(fs::read(e.join("text")).unwrap(), text);
    assert_eq!(fs::read(e.join("big")).unwrap(), big);
}

#[test]
fn an_unreachable_remote_fails_clearly_after_retries_and_changes_nothing() {
    let (_t, s, _) = fixture_store();
    vz_ok(
        &s,
        &[
            "remote",
            "add",
            "dead",
            "s3://bucket1",
            "--endpoint",
            "http://127.0.0.1:9",
            "--region",
            "garage",
        ],
    );
    let before = objects_state(&s);
    let started = Instant::now();
    let e = vzr_err(&s, &["push", "fx", "dead"]);
    assert!(
        e.contains("unreachable") && e.contains("127.0.0.1:9"),
        "{e}"
    );
    // Retried (with backoff) for the window, then gave up.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "no retries?"
    );
    let e = vzr_err(&s, &["pull", "fx@1", "dead"]);
    assert!(e.contains("unreachable"), "{e}");
    assert_eq!(objects_state(&s), before);
    assert_eq!(template_count(&s), 1);
    verify_clean(&s);
}

#[test]
fn wrong_or_missing_credentials_are_refused_and_never_printed() {
    let g = Garage::start();
    let (_t, s, _) = fixture_store();
    g.add_remote(&s, "fleet", "");
    let bad_secret = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let out = vz_env(
        &s,
        &[
            ("AWS_ACCESS_KEY_ID", KEY),
            ("AWS_SECRET_ACCESS_KEY", bad_secret),
            ("VZSTORE_REMOTE_RETRY_SECS", "2"),
        ],
        &["push", "fx", "fleet"],
    );
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("refused access"), "{e}");
    assert!(
        !e.contains(bad_secret) && !e.contains(SECRET),
        "a secret was printed: {e}"
    );
    let out = vz_env(
        &s,
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
        &["push", "fx", "fleet"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credentials"));
    assert!(g.keys("templates/").is_empty());

    // A credentials file: refused while others can read it, used at 0600.
    let f = s.parent().unwrap().join("creds");
    fs::write(
        &f,
        format!("[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let add = |name: &str| {
        vz(
            &s,
            &[
                "remote",
                "add",
                name,
                "s3://vzstore-test/viafile",
                "--endpoint",
                &g.endpoint(),
                "--region",
                "garage",
                "--credentials-file",
                f.to_str().unwrap(),
            ],
        )
    };
    let out = add("byfile");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(add("byfile").status.success());
    let out = vz_env(
        &s,
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
        &["push", "fx", "byfile"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = vz_ok(&s, &["remote", "ls", "--json"]);
    assert!(!listed.contains(SECRET), "{listed}");
}

#[test]
fn a_remote_object_with_wrong_bytes_is_refused_and_named() {
    let g = Garage::start();
    let (_a, a) = {
        let (t, s, _) = fixture_store();
        g.add_remote(&s, "fleet", "pfx");
        (t, s)
    };
    vzr_ok(&a, &["push", "fx", "fleet"]);
    let victim = g
        .keys("pfx/objects/")
        .into_iter()
        .find(|k| !k.ends_with(".zst"))
        .expect("a raw object");
    let hash = victim.rsplit('/').next().unwrap().to_string();
    g.put(&victim, b"these are not the bytes you are looking for");
    let (_b, b) = node(&g, None);
    let e = vzr_err(&b, &["pull", "fx", "fleet"]);
    assert!(e.contains(&hash) && e.contains("refused"), "{e}");
    assert_eq!(template_count(&b), 0);
    assert!(!b.join("objects").join(&hash[..2]).join(&hash[2..]).exists());
    verify_clean(&b);
    // A compressed object whose bytes decompress to something else.
    g.put(&victim, &zstd::bulk::compress(b"x", 3).unwrap());
    let z = g
        .keys("pfx/objects/")
        .into_iter()
        .find(|k| k.ends_with(".zst"));
    if let Some(z) = z {
        let zh = z
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".zst")
            .to_string();
        g.put(&z, &zstd::bulk::compress(&noise(1, 5000), 3).unwrap());
        let e = vzr_err(&b, &["pull", "fx", "fleet"]);
        assert!(e.contains("refused"), "{e}");
        assert!(!b.join("objects").join(&zh[..2]).join(&zh[2..]).exists());
    }
    assert_eq!(template_count(&b), 0);
    verify_clean(&b);
}

#[test]
fn a_remote_document_naming_a_missing_object_is_refused_before_anything_moves() {
    let g = Garage::start();
    let (_a, a) = {
        let (t, s, _) = fixture_store();
        g.add_remote(&s, "fleet", "pfx");
        (t, s)
    };
    vzr_ok(&a, &["push", "fx", "fleet"]);
    let victim = g.keys("pfx/objects/").pop().unwrap();
    g.delete(&victim);
    let (_b, b) = node(&g, None);
    let e = vzr_err(&b, &["pull", "fx", "fleet"]);
    assert!(e.contains("does not hold"), "{e}");
    let e = vzr_err(&b, &["pull", "fx", "fleet", "--lazy"]);
    assert!(e.contains("does not hold"), "{e}");
    // As the message says: a push from a node that has it repairs the remote.
    let fixed = json(&vzr_ok(&a, &["push", "fx", "fleet", "--json"]));
    assert_eq!(fixed["objects_moved"], 1, "{fixed}");
    vzr_ok(&b, &["pull", "fx", "fleet"]);
    verify_clean(&b);
    vz_ok(&b, &["templates", "rm", "fx@1"]);
    vz_ok(&b, &["gc"]);
    assert_eq!(object_count(&b), 0);
    assert_eq!(template_count(&b), 0);
    verify_clean(&b);
    // A damaged document is named.
    g.put("pfx/templates/fx/1", b"VZT1garbage");
    let e = vzr_err(&b, &["pull", "fx", "fleet"]);
    assert!(
        e.contains("pfx/templates/fx/1") || e.contains("templates/fx/1"),
        "{e}"
    );
}

/// Push in the background, slowed by a failpoint; kill the server once
/// some objects landed; the push fails, no document exists; after a restart
/// a rerun sends only the rest.
#[test]
fn a_server_killed_mid_push_and_mid_pull_leaves_no_document_naming_missing_objects() {
    if !require_failpoints() {
        return;
    }
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    big_tree(&src, 200, 256 << 10, 10);
    let (_a, a) = node(&g, Some((&src, "big")));
    let child = Command::new(bin())
        .args([
            "--store",
            a.to_str().unwrap(),
            "push",
            "big",
            "fleet",
            "--json",
        ])
        .envs(CREDS)
        .env("FAILPOINTS", "remote-put=sleep(20)")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while g.keys("pfx/objects/").len() < 20 {
        assert!(Instant::now() < deadline, "the push sent nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    g.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.restart();
    assert!(
        g.keys("pfx/templates/").is_empty(),
        "a document before its objects"
    );
    let sent_before = g.keys("pfx/objects/").len() as u64;
    let rerun = json(&vzr_ok(&a, &["push", "big", "fleet", "--json"]));
    assert!(
        rerun["objects_skipped"].as_u64().unwrap() >= sent_before.min(20),
        "{rerun}"
    );
    assert!(rerun["objects_moved"].as_u64().unwrap() > 0);

    // The same on the way in.
    let (_b, b) = node(&g, None);
    let child = Command::new(bin())
        .args(["--store", b.to_str().unwrap(), "pull", "big", "fleet"])
        .envs(CREDS)
        .env("FAILPOINTS", "remote-get=sleep(20)")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    g.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(template_count(&b), 0);
    verify_clean(&b);
    g.restart();
    vzr_ok(&b, &["pull", "big", "fleet"]);
    verify_clean(&b);
    let (ea, eb) = (t.path().join("ea"), t.path().join("eb"));
    export(&a, "big", &ea);
    export(&b, "big", &eb);
    assert_same_tree(&ea, &eb);
}

#[test]
fn a_pull_that_fills_the_disk_fails_cleanly() {
    if !require_root("a small loop file system") {
        return;
    }
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    big_tree(&src, 120, 1 << 20, 20);
    let (_a, a) = node(&g, Some((&src, "big")));
    vzr_ok(&a, &["push", "big", "fleet"]);
    let small = LoopFs::new(64);
    let b = small.path.join("store");
    vz_ok(&b, &["init"]);
    g.add_remote(&b, "fleet", "pfx");
    let e = vzr_err(&b, &["pull", "big", "fleet"]);
    assert!(
        e.contains("No space left") || e.contains("ENOSPC") || e.contains("space"),
        "{e}"
    );
    assert_eq!(template_count(&b), 0);
    verify_clean(&b);
    // What was fetched is either gone or whole; gc clears it.
    vz_ok(&b, &["gc"]);
    verify_clean(&b);
}

#[test]
fn two_nodes_pushing_at_once() {
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    big_tree(&src, 40, 200_000, 30);
    let (_a, a) = node(&g, Some((&src, "same")));
    let (_c, c) = node(&g, Some((&src, "same")));
    let push = |s: &Path| {
        Command::new(bin())
            .args(["--store", s.to_str().unwrap(), "push", "same", "fleet"])
            .envs(CREDS)
            .output()
            .unwrap()
    };
    let (ra, rc) = std::thread::scope(|sc| {
        let ha = sc.spawn(|| push(&a));
        let hc = sc.spawn(|| push(&c));
        (ha.join().unwrap(), hc.join().unwrap())
    });
    assert!(
        ra.status.success(),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert!(
        rc.status.success(),
        "{}",
        String::from_utf8_lossy(&rc.stderr)
    );
    let (_b, b) = node(&g, None);
    vzr_ok(&b, &["pull", "same", "fleet"]);
    verify_clean(&b);

    // Different content under one name and version: one document wins, the
    // other node is told; whatever is there is whole.
    let src2 = t.path().join("src2");
    big_tree(&src2, 10, 100_000, 99);
    let (_d, d) = node(&g, Some((&src2, "clash")));
    let (_e, e) = node(&g, Some((&src, "clash")));
    let (rd, re) = std::thread::scope(|sc| {
        let hd = sc.spawn(|| {
            Command::new(bin())
                .args(["--store", d.to_str().unwrap(), "push", "clash", "fleet"])
                .envs(CREDS)
                .output()
                .unwrap()
        });
        let he = sc.spawn(|| {
            Command::new(bin())
                .args(["--store", e.to_str().unwrap(), "push", "clash", "fleet"])
                .envs(CREDS)
                .output()
                .unwrap()
        });
        (hd.join().unwrap(), he.join().unwrap())
    });
    // Exactly one is told it won, the other that the remote holds other
    // content; what the remote holds is the winner's, whole.
    assert_ne!(
        rd.status.success(),
        re.status.success(),
        "both or neither won: {}\n{}",
        String::from_utf8_lossy(&rd.stderr),
        String::from_utf8_lossy(&re.stderr)
    );
    let (winner, loser, winner_src) = if rd.status.success() {
        (&d, &re, &src2)
    } else {
        (&e, &rd, &src)
    };
    let _ = winner;
    assert!(
        String::from_utf8_lossy(&loser.stderr).contains("differs"),
        "{}",
        String::from_utf8_lossy(&loser.stderr)
    );
    let (_f, f) = node(&g, None);
    vzr_ok(&f, &["pull", "clash", "fleet"]);
    let out = t.path().join("clash-out");
    export(&f, "clash", &out);
    assert_same_tree(winner_src, &out);
    verify_clean(&f);
}

#[test]
fn remote_gc_removes_only_unnamed_objects_and_never_runs_beside_a_push() {
    if !require_failpoints() {
        return;
    }
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let (src1, src2) = (t.path().join("s1"), t.path().join("s2"));
    big_tree(&src1, 10, 50_000, 1);
    big_tree(&src2, 10, 50_000, 500);
    let (_a, a) = node(&g, Some((&src1, "one")));
    vz_ok(&a, &["ingest", src2.to_str().unwrap(), "--name", "two"]);
    vzr_ok(&a, &["push", "one", "fleet"]);
    vzr_ok(&a, &["push", "two", "fleet"]);
    let all = g.keys("pfx/objects/").len();
    vzr_ok(&a, &["remote", "delete", "fleet", "two@1"]);
    // Young objects are kept by default.
    let kept = json(&vzr_ok(&a, &["remote", "gc", "fleet", "--json"]));
    assert_eq!(kept["removed_objects"], 0, "{kept}");
    assert_eq!(kept["young_objects"], 10, "{kept}");
    let dry = json(&vzr_ok(
        &a,
        &[
            "remote",
            "gc",
            "fleet",
            "--min-age",
            "0s",
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(dry["removed_objects"], 10);
    assert_eq!(g.keys("pfx/objects/").len(), all);
    let done = json(&vzr_ok(
        &a,
        &["remote", "gc", "fleet", "--min-age", "0", "--json"],
    ));
    assert_eq!(done["removed_objects"], 10, "{done}");
    assert_eq!(g.keys("pfx/objects/").len(), all - 10);
    let (_b, b) = node(&g, None);
    vzr_ok(&b, &["pull", "one", "fleet"]);
    verify_clean(&b);

    // A push in progress (its lease taken) keeps gc out.
    vzr_ok(&a, &["remote", "delete", "fleet", "one@1"]);
    let child = Command::new(bin())
        .args(["--store", a.to_str().unwrap(), "push", "two", "fleet"])
        .envs(CREDS)
        .env("FAILPOINTS", "remote-put=sleep(300)")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.keys("pfx/locks/").is_empty() {
        assert!(Instant::now() < deadline, "no push lease appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = vzr_err(&a, &["remote", "gc", "fleet", "--min-age", "0"]);
    assert!(e.contains("busy") && e.contains("push"), "{e}");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(g.keys("pfx/locks/").is_empty(), "the push left its lease");
    let (_c, c) = node(&g, None);
    vzr_ok(&c, &["pull", "two", "fleet"]);
    verify_clean(&c);
    vzr_ok(&a, &["remote", "gc", "fleet", "--min-age", "0"]);
    vzr_ok(&c, &["pull", "two@1", "fleet"]);
}

#[test]
fn lazy_pull_serves_a_fuse_container_fetching_objects_on_first_open() {
    if !require_root("FUSE mounts") {
        return;
    }
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    big_tree(&src, 30, 100_000, 40);
    let (_a, a) = node(&g, Some((&src, "lz")));
    vzr_ok(&a, &["push", "lz", "fleet"]);
    let (_b, b) = node(&g, None);
    let s = json(&vzr_ok(&b, &["pull", "lz", "fleet", "--lazy", "--json"]));
    assert_eq!(s["lazy"], true);
    assert_eq!(object_count(&b), 0);
    verify_clean(&b);
    let e = vzr_err(
        &b,
        &["create", "k1", "--template", "lz", "--backend", "kernel"],
    );
    assert!(
        e.contains("pulled lazily") && e.contains("vzstore pull lz@1 fleet"),
        "{e}"
    );
    let e = vzr_err(&b, &["export", "lz", t.path().join("x").to_str().unwrap()]);
    assert!(e.contains("pulled lazily"), "{e}");
    vzr_ok(&b, &["create", "c1", "--template", "lz"]);
    let m = Mounted::with_env(&b, "c1", &CREDS);
    let want = fs::read(src.join("big/f0007")).unwrap();
    assert_eq!(fs::read(m.path.join("big/f0007")).unwrap(), want);
    // Metadata needs no object.
    assert_eq!(fs::read_dir(m.path.join("big")).unwrap().count(), 30);
    let h = blake3::hash(&want).to_hex().to_string();
    assert!(
        b.join("objects").join(&h[..2]).join(&h[2..]).exists(),
        "{h} not kept locally: {:?}",
        objects_state(&b).keys().collect::<Vec<_>>()
    );
    assert_eq!(object_count(&b), 1, "more than the opened file was fetched");
    // Writes go to the container, as always.
    fs::write(m.path.join("big/f0001"), b"mine").unwrap();
    m.umount();
    verify_clean(&b);
    // A full pull fetches the rest; then the kernel backend can use it.
    let full = json(&vzr_ok(&b, &["pull", "lz", "fleet", "--json"]));
    assert!(full["objects_moved"].as_u64().unwrap() >= 29, "{full}");
    verify_clean(&b);
    vzr_ok(
        &b,
        &["create", "k1", "--template", "lz", "--backend", "kernel"],
    );
    vz_ok(&b, &["export", "lz", t.path().join("x").to_str().unwrap()]);
    assert_same_tree(&src, &t.path().join("x"));
}

#[test]
fn a_container_moves_between_stores_with_its_changes() {
    if !require_root("FUSE mounts") {
        return;
    }
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    build_fixture(&src);
    let (_a, a) = node(&g, Some((&src, "fx")));
    for (seed, backend) in [(5, "fuse"), (6, "kernel")] {
        let ct = format!("mv-{backend}");
        vz_ok(
            &a,
            &["create", &ct, "--template", "fx", "--backend", backend],
        );
        let m = Mounted::new(&a, &ct);
        fs::write(m.path.join("new-file"), noise(seed, 70_000)).unwrap();
        fs::write(m.path.join("empty"), b"now not empty").unwrap();
        let victim = fs::read_dir(&m.path)
            .unwrap()
            .flatten()
            .find(|e| {
                e.file_type().unwrap().is_file()
                    && e.file_name() != "new-file"
                    && e.file_name() != "empty"
            })
            .map(|e| e.path());
        if let Some(v) = victim {
            fs::remove_file(v).unwrap();
        }
        fs::create_dir(m.path.join("newdir")).unwrap();
        std::os::unix::fs::symlink("new-file", m.path.join("newdir/link")).unwrap();
        let before = snapshot(&m.path);
        m.umount();
        let s = json(&vzr_ok(
            &a,
            &["push", "--container", &ct, "fleet", "--json"],
        ));
        assert!(s["objects_moved"].as_u64().unwrap() >= 1, "{s}");

        let (_b, b) = node(&g, None);
        vzr_ok(&b, &["pull", "--container", &ct, "fleet"]);
        verify_clean(&b);
        let listed = vz_ok(&b, &["list"]);
        assert!(listed.contains(&ct) && listed.contains(backend), "{listed}");
        let m = Mounted::new(&b, &ct);
        let after = snapshot(&m.path);
        let differ: Vec<String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| {
                format!(
                    "{}: {:?} -> {:?}",
                    String::from_utf8_lossy(k),
                    before.get(k),
                    after.get(k)
                )
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{backend} container differs after the move:\n{}",
            differ.join("\n")
        );
        m.umount();
        let e = vzr_err(&b, &["pull", "--container", &ct, "fleet"]);
        assert!(e.contains("already exists"), "{e}");
    }
}

#[test]
fn a_damaged_local_object_is_never_sent() {
    let g = Garage::start();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // Above the whole-object limit (sent in parts) and below it.
    let (big, small) = (noise(8, 24 << 20), noise(9, 5000));
    fs::write(src.join("big"), &big).unwrap();
    fs::write(src.join("small"), &small).unwrap();
    let (_a, a) = node(&g, Some((&src, "dmg")));
    // Each case to its own prefix: what the other case sent is not there.
    for (remote, data) in [("r0", &big), ("r1", &small)] {
        g.add_remote(&a, remote, remote);
        let h = blake3::hash(data).to_hex().to_string();
        let obj = a.join("objects").join(&h[..2]).join(&h[2..]);
        let mut bytes = fs::read(&obj).unwrap();
        bytes[1000] ^= 0xff;
        fs::write(&obj, &bytes).unwrap();
        let e = vzr_err(&a, &["push", "dmg", remote]);
        assert!(e.contains(&h) && e.contains("corrupt"), "{e}");
        assert!(
            !g.keys(&format!("{remote}/objects/"))
                .iter()
                .any(|k| k.contains(&h)),
            "a damaged object was sent"
        );
        assert!(g.keys(&format!("{remote}/templates/")).is_empty());
        // Repaired, it goes.
        fs::write(&obj, data).unwrap();
    }
    vzr_ok(&a, &["push", "dmg", "fleet"]);
    let (_b, b) = node(&g, None);
    vzr_ok(&b, &["pull", "dmg", "fleet"]);
    verify_clean(&b);
}
