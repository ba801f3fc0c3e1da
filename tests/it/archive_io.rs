//! Tar archives in and out: real archives made by GNU tar and bsdtar, every
//! compression, standard input, exports that both tars extract to the same
//! tree, hostile archives (tests/data/hostile_archives.py), bombs, sparse
//! files, `--consume`, and the write paths' faults (EIO, kill -9, full disk).

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn need(tool: &str) -> bool {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    // CI installs every tool (tools/setup.sh): a missing one is a failure there.
    assert!(ok, "{tool} is not installed (tools/setup.sh installs it)");
    ok
}

fn assert_clean(store: &Path) {
    let out = vz_ok(store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
}

/// The manifest digest of a template (same tree, same digest).
pub fn digest(store: &Path, t: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&vz_ok(store, &["templates", "show", t, "--json"])).unwrap();
    v["digest"].as_str().unwrap().to_string()
}

/// `vzstore ingest - --name NAME` with `archive` on standard input.
fn ingest_stdin(store: &Path, archive: &Path, name: &str) {
    let out = Command::new(bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "ingest",
            "-",
            "--name",
            name,
        ])
        .stdin(fs::File::open(archive).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn export_dir(store: &Path, t: &str, dest: &Path) {
    vz_ok(store, &["export", t, dest.to_str().unwrap()]);
}

/// The awkward fixture, its archives made by GNU tar (pax with every xattr)
/// and bsdtar (pax).
fn fixture_archives(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let src = dir.join("src");
    build_fixture(&src);
    let gnu = dir.join("gnu.tar");
    let bsd = dir.join("bsd.tar");
    sh(&format!(
        "tar --format=pax --xattrs --xattrs-include='*' --sparse -C {} -cf {} .",
        src.display(),
        gnu.display()
    ));
    sh(&format!(
        "bsdtar --format pax -C {} -cf {} .",
        src.display(),
        bsd.display()
    ));
    (src, gnu, bsd)
}

#[test]
fn gnu_tar_and_bsdtar_archives_ingest_to_the_same_tree() {
    if !require_root("the fixture has devices, owners and trusted xattrs") || !need("bsdtar") {
        return;
    }
    let (t, store) = new_store();
    let (src, gnu, bsd) = fixture_archives(t.path());
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "dir"]);
    vz_ok(&store, &["ingest", gnu.to_str().unwrap(), "--name", "gnu"]);
    vz_ok(&store, &["ingest", bsd.to_str().unwrap(), "--name", "bsd"]);
    let want = digest(&store, "dir");
    let out = t.path().join("out-gnu");
    export_dir(&store, "gnu", &out);
    assert_same_tree(&src, &out);
    assert_eq!(
        digest(&store, "gnu"),
        want,
        "GNU tar's archive differs from the tree"
    );
    let out = t.path().join("out-bsd");
    export_dir(&store, "bsd", &out);
    libarchive_pre_1970(&src, &out);
    assert_same_tree(&src, &out);
    // Every compression, recognised from the bytes, and standard input.
    for (tool, ext) in [
        ("gzip", "gz"),
        ("zstd -q", "zst"),
        ("xz", "xz"),
        ("bzip2", "bz2"),
    ] {
        let z = t.path().join(format!("gnu.tar.{ext}"));
        sh(&format!("{tool} -c < {} > {}", gnu.display(), z.display()));
        let name = format!("z{ext}");
        vz_ok(&store, &["ingest", z.to_str().unwrap(), "--name", &name]);
        assert_eq!(digest(&store, &name), want, "{ext}");
    }
    ingest_stdin(&store, &gnu, "stdin");
    assert_eq!(digest(&store, "stdin"), want);
    let v: serde_json::Value = serde_json::from_str(&vz_ok(
        &store,
        &["ingest", gnu.to_str().unwrap(), "--name", "again", "--json"],
    ))
    .unwrap();
    assert_eq!(v["new_objects"], 0, "{v}");
    assert_eq!(v["template"], "again@1");
    assert_clean(&store);
}

#[test]
fn exported_tar_extracts_to_an_identical_tree_with_gnu_tar_and_bsdtar() {
    if !require_root("owners, devices and trusted xattrs") || !need("bsdtar") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    build_fixture(&src);
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "fx"]);
    let tar = t.path().join("fx.tar");
    vz_ok(
        &store,
        &["export", "fx", tar.to_str().unwrap(), "--format", "tar"],
    );
    // The sparse file stays sparse in the archive (1 GiB logical).
    assert!(fs::metadata(&tar).unwrap().len() < 64 << 20);
    let g = t.path().join("gnu");
    fs::create_dir(&g).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner -xpf {} -C {}",
        tar.display(),
        g.display()
    ));
    // Neither tar restores the mtime of the directory it extracts into.
    same_mtime(&src, &g);
    assert_same_tree(&src, &g);
    let b = t.path().join("bsd");
    fs::create_dir(&b).unwrap();
    sh(&format!(
        "bsdtar --numeric-owner -xpf {} -C {}",
        tar.display(),
        b.display()
    ));
    same_mtime(&src, &b);
    libarchive_pre_1970(&src, &b);
    assert_same_tree(&src, &b);
    // And back in: the same template.
    ingest_stdin(&store, &tar, "back");
    assert_eq!(digest(&store, "back"), digest(&store, "fx"));
    // To standard output: the same bytes as to a file.
    let out = Command::new(bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "export",
            "fx",
            "-",
            "--format",
            "tar",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, fs::read(&tar).unwrap());
    // Never over an existing file.
    let err = vz_err(
        &store,
        &["export", "fx", tar.to_str().unwrap(), "--format", "tar"],
    );
    assert!(err.contains("exists already"), "{err}");
}

/// libarchive writes and reads a pax time before 1970 with a fraction as
/// its integer part plus a positive fraction (-86400.000000005 for 5 ns
/// after -86400 s), where POSIX, GNU tar and vzstore read a plain decimal
/// (-86399.999999995). Such times (one fixture file) come out up to 2 s off
/// through bsdtar: take them from the source before comparing.
fn libarchive_pre_1970(src: &Path, other: &Path) {
    for (rel, snap) in snapshot(src) {
        if snap.mtime.0 < 0 && snap.mtime.1 != 0 && snap.kind != "symlink" {
            let p = other.join(std::ffi::OsStr::from_bytes(&rel));
            set_mtime(&p, snap.mtime.0, snap.mtime.1);
        }
    }
}

fn same_mtime(from: &Path, to: &Path) {
    let m = fs::metadata(from).unwrap();
    set_mtime(to, m.mtime(), m.mtime_nsec());
}

fn hostile_dir(t: &Path) -> PathBuf {
    let dir = t.join("hostile");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile_archives.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg("--skip-bombs")
        .arg(&dir)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    dir
}

#[test]
fn hostile_archives_get_clear_errors_or_the_documented_behaviour() {
    let (t, store) = new_store();
    let dir = hostile_dir(t.path());
    let cwd = t.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    vz_ok(
        &store,
        &[
            "ingest",
            dir.join("absolute.tar").to_str().unwrap(),
            "--name",
            "seed",
        ],
    );
    let refused = [
        ("dotdot.tar", "`..`"),
        ("symlink-through.tar", "is a symlink"),
        ("symlink-through-rel.tar", "is a symlink"),
        ("hardlink-outside.tar", "`..`"),
        ("hardlink-absent.tar", "not in the tree before it"),
        ("hardlink-forward.tar", "not in the tree before it"),
        ("replace-dir.tar", "replaces a directory that holds entries"),
        ("sparse-10tb.tar", "64 GiB limit"),
        ("sparse-10tb-pax.tar", "64 GiB limit"),
        ("sparse-bad-map.tar", "sparse map"),
        ("truncated.tar", "truncated archive"),
        ("truncated-header.tar", "truncated archive"),
        ("bad-checksum.tar", "bad header checksum"),
    ];
    let before = objects_state(&store);
    for (file, why) in refused {
        let p = dir.join(file);
        let out = Command::new(bin())
            .current_dir(&cwd)
            .args([
                "--store",
                store.to_str().unwrap(),
                "ingest",
                p.to_str().unwrap(),
                "--name",
                "h",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {err}");
        assert!(err.contains(file) && err.contains(why), "{file}: {err}");
        assert!(err.contains("the store is unchanged"), "{file}: {err}");
    }
    assert_eq!(
        objects_state(&store),
        before,
        "a refused archive left objects"
    );
    assert!(vz(&store, &["templates", "show", "h"]).status.code() == Some(1));
    // Documented behaviour: leading `/` stripped; the last duplicate wins; a
    // file may replace an empty directory.
    let ok = |file: &str, name: &str| {
        let out = vz(
            &store,
            &["ingest", dir.join(file).to_str().unwrap(), "--name", name],
        );
        assert!(out.status.success(), "{file}: {out:?}");
        let ex = t.path().join(format!("ex-{name}"));
        export_dir(&store, name, &ex);
        (String::from_utf8_lossy(&out.stderr).into_owned(), ex)
    };
    let (warn, ex) = ok("absolute.tar", "abs");
    assert!(warn.contains("leading `/`"), "{warn}");
    assert_eq!(fs::read(ex.join("etc/abs-file")).unwrap(), b"abs\n");
    let (warn, ex) = ok("duplicate.tar", "dup");
    assert!(warn.contains("more than once"), "{warn}");
    assert_eq!(fs::read(ex.join("f")).unwrap(), b"two\n");
    let (_, ex) = ok("replace-empty-dir.tar", "empty");
    assert!(fs::symlink_metadata(ex.join("e")).unwrap().is_file());
    // The inner bomb of a nested archive is a plain (small) file.
    let (_, ex) = ok("bomb-nested.tar.gz", "nested");
    assert!(fs::metadata(ex.join("inner.gz")).unwrap().len() < 2 << 20);
    // Nothing was written anywhere but the store.
    assert_eq!(fs::read_dir(&cwd).unwrap().count(), 0);
    for p in [
        "/evil",
        "/evil2",
        "/etc/abs-file",
        "/abs-dir",
        "/etc/passwd/x",
    ] {
        assert!(!Path::new(p).exists(), "{p} was written");
    }
    // Not an archive at all.
    let err = vz_err(&store, &["ingest", "/proc/self/exe", "--name", "x"]);
    assert!(err.contains("not a tar archive"), "{err}");
    assert_clean(&store);
}

/// A tar of one member holding `size` zero bytes, compressed by `compress`.
fn zero_bomb(path: &Path, size: u64, gzip: bool) {
    use vzstore::archive::read::{Member, MemberKind};
    use vzstore::archive::write::TarWriter;
    let f = fs::File::create(path).unwrap();
    let out: Box<dyn Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            f,
            flate2::Compression::default(),
        ))
    } else {
        Box::new(
            zstd::stream::write::Encoder::new(f, 1)
                .unwrap()
                .auto_finish(),
        )
    };
    let mut w = TarWriter::new(out);
    let m = Member {
        name: b"zeros".to_vec(),
        kind: MemberKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        size,
        link: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        xattrs: Vec::new(),
        sparse: None,
        offset: 0,
    };
    w.begin(&m).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        w.data(&zeros).unwrap();
    }
    w.end_member().unwrap();
    drop(w.finish().unwrap());
}

#[test]
fn compression_bombs_are_refused() {
    let (t, store) = new_store();
    for gzip in [false, true] {
        let p = t
            .path()
            .join(if gzip { "bomb.tar.gz" } else { "bomb.tar.zst" });
        zero_bomb(&p, 2 << 30, gzip);
        assert!(fs::metadata(&p).unwrap().len() < 16 << 20);
        let err = vz_err(&store, &["ingest", p.to_str().unwrap(), "--name", "bomb"]);
        assert!(
            err.contains("decompression bomb") && err.contains("refused"),
            "{err}"
        );
    }
    // The session's staged part of the zeros is gone with it.
    assert!(objects_state(&store).is_empty());
    assert_clean(&store);
}

#[test]
fn consume_moves_new_files_into_the_store() {
    if !require_root("objects are chowned to root") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("d/a"), noise(1, 100_000)).unwrap();
    fs::write(src.join("b"), b"bbb").unwrap();
    fs::hard_link(src.join("b"), src.join("b2")).unwrap();
    rustix::fs::chown(src.join("d/a"), Some(rustix::fs::Uid::from_raw(1234)), None).unwrap();
    rustix::fs::setxattr(
        src.join("d/a"),
        "user.k",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let copy = t.path().join("copy");
    sh(&format!("cp -a {} {}", src.display(), copy.display()));
    let ino = fs::metadata(src.join("d/a")).unwrap().ino();
    vz_ok(
        &store,
        &["ingest", src.to_str().unwrap(), "--name", "c", "--consume"],
    );
    // The single-link file moved; the hardlinked ones stayed (copied).
    assert!(!src.join("d/a").exists());
    assert!(src.join("b").exists() && src.join("b2").exists());
    let obj = walk_objects(&store)
        .into_iter()
        .find(|p| fs::metadata(p).unwrap().ino() == ino)
        .expect("the moved inode is an object");
    let m = fs::metadata(&obj).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777 & !0o444), (0, 0), "{m:?}");
    assert!(
        vzstore::store::fsutil::read_xattrs(&obj)
            .unwrap()
            .is_empty()
    );
    let out = t.path().join("out");
    export_dir(&store, "c", &out);
    assert_same_tree(&copy, &out);
    assert_clean(&store);
    let err = vz_err(&store, &["ingest", "-", "--name", "x", "--consume"]);
    assert!(err.contains("directory source only"), "{err}");
}

fn walk_objects(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![store.join("objects")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// A big archive: the Debian root as a tar (made once per test).
fn debian_tar(dir: &Path) -> PathBuf {
    let root = debian_root("debian-minbase", None, "usr/bin/dpkg");
    let p = dir.join("debian.tar");
    sh(&format!(
        "tar --format=pax --xattrs --xattrs-include='*' -C {} -cf {} .",
        root.display(),
        p.display()
    ));
    p
}

#[test]
fn tar_ingest_faults_leave_a_clean_store() {
    if !require_root("debootstrap root") || !require_failpoints() {
        return;
    }
    let (t, store) = new_store();
    let tar = debian_tar(t.path());
    for fp in [
        "ingest-stage=return(EIO)",
        "publish-sync=return(EIO)",
        "catalog-commit=return(EIO)",
    ] {
        let out = vz_env(
            &store,
            &[("FAILPOINTS", fp)],
            &["ingest", tar.to_str().unwrap(), "--name", "d"],
        );
        assert_eq!(out.status.code(), Some(1), "{fp}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("store is unchanged"));
        assert_clean(&store);
    }
    // kill -9 while the archive streams in through a pipe.
    for delay_ms in [150u64, 400, 900] {
        let mut child = Command::new(bin())
            .args([
                "--store",
                store.to_str().unwrap(),
                "ingest",
                "-",
                "--name",
                "d",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let data = fs::read(&tar).unwrap();
        let feeder = std::thread::spawn(move || {
            for c in data.chunks(1 << 20) {
                if stdin.write_all(c).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let _ = feeder.join();
        assert_clean(&store);
        assert!(vz(&store, &["templates", "show", "d"]).status.code() == Some(1));
    }
    vz_ok(&store, &["ingest", tar.to_str().unwrap(), "--name", "d"]);
    vz_ok(&store, &["gc"]);
    assert_clean(&store);
}

#[test]
fn tar_ingest_and_export_on_a_full_disk() {
    if !require_root("loop file systems") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = debian_tar(t.path());
    let small = LoopFs::new(64);
    let store = small.path.join("store");
    vz_ok(&store, &["init"]);
    let err = vz_err(&store, &["ingest", tar.to_str().unwrap(), "--name", "d"]);
    assert!(
        err.contains("No space left") && err.contains("store is unchanged"),
        "{err}"
    );
    assert_clean(&store);
    assert!(vz(&store, &["templates", "show", "d"]).status.code() == Some(1));
    // An export to a full destination leaves no file under the final name,
    // and no partial file beside it.
    let (_t2, big) = new_store();
    vz_ok(&big, &["ingest", tar.to_str().unwrap(), "--name", "d"]);
    let dest_fs = LoopFs::new(32);
    for (fmt, name) in [("tar", "d.tar"), ("oci", "d.oci"), ("dir", "d.dir")] {
        let dest = dest_fs.path.join(name);
        let err = vz_err(
            &big,
            &["export", "d", dest.to_str().unwrap(), "--format", fmt],
        );
        assert!(err.contains("No space left"), "{fmt}: {err}");
        assert!(
            !dest.exists(),
            "{fmt}: a partial export under the final name"
        );
        let left: Vec<_> = fs::read_dir(&dest_fs.path)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "lost+found")
            .collect();
        assert!(left.is_empty(), "{fmt}: left {left:?}");
    }
}

#[test]
fn container_exports_show_its_current_tree() {
    if !require_root("FUSE mounts") {
        return;
    }
    let (t, store, _src) = fixture_store();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    let m = Mounted::new(&store, "c1");
    fs::write(m.path.join("new-file"), b"written in the container").unwrap();
    fs::remove_file(m.path.join("usr/bin/big-copy")).unwrap();
    fs::create_dir(m.path.join("newdir")).unwrap();
    let err = vz_err(
        &store,
        &[
            "export",
            "--container",
            "c1",
            t.path().join("x").to_str().unwrap(),
        ],
    );
    assert!(err.contains("c1") && err.contains("mounted"), "{err}");
    let live = t.path().join("live");
    sh(&format!("cp -a {} {}", m.path.display(), live.display()));
    drop(m);
    let dir = t.path().join("dir");
    vz_ok(
        &store,
        &["export", "--container", "c1", dir.to_str().unwrap()],
    );
    assert_same_tree(&live, &dir);
    let tar = t.path().join("c1.tar");
    vz_ok(
        &store,
        &[
            "export",
            "--container",
            "c1",
            tar.to_str().unwrap(),
            "--format",
            "tar",
        ],
    );
    vz_ok(&store, &["ingest", tar.to_str().unwrap(), "--name", "c1t"]);
    let back = t.path().join("back");
    export_dir(&store, "c1t", &back);
    assert_same_tree(&live, &back);
    assert_clean(&store);
}

/// An archive of the given members (name, kind, link or content, xattrs).
/// One member to write: name, kind (`f`ile, `d`ir, `l`ink, `h`ardlink),
/// content or link target, xattrs.
type Spec<'a> = (&'a [u8], char, &'a [u8], Vec<(Vec<u8>, Vec<u8>)>);

fn archive(path: &Path, members: &[Spec<'_>]) {
    use vzstore::archive::read::{Member, MemberKind};
    use vzstore::archive::write::TarWriter;
    let mut w = TarWriter::new(fs::File::create(path).unwrap());
    for (name, kind, data, xattrs) in members {
        let kind = match kind {
            'f' => MemberKind::File,
            'd' => MemberKind::Dir,
            'l' => MemberKind::Symlink,
            _ => MemberKind::Hardlink,
        };
        let m = Member {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: if kind == MemberKind::File {
                data.len() as u64
            } else {
                0
            },
            link: if kind == MemberKind::File {
                Vec::new()
            } else {
                data.to_vec()
            },
            dev_major: 0,
            dev_minor: 0,
            xattrs: xattrs.clone(),
            sparse: None,
            offset: 0,
        };
        w.begin(&m).unwrap();
        if kind == MemberKind::File {
            w.data(data).unwrap();
        }
        w.end_member().unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn members_no_file_system_can_hold_are_refused() {
    let (t, store) = new_store();
    let deep = "d/".repeat(3000) + "f";
    let long = "n".repeat(256);
    let huge_path = "d/".repeat(500_000) + "f";
    // Long enough for a pax `path` record, where a NUL can hide.
    let nul = [&b"a\0"[..], &[b'b'; 120]].concat();
    let x = |n: &[u8], v: &[u8]| vec![(n.to_vec(), v.to_vec())];
    let cases: Vec<(&str, Vec<Spec<'_>>, &str)> = vec![
        (
            "deep",
            vec![(deep.as_bytes(), 'f', b"x", vec![])],
            "longer than 4095 bytes",
        ),
        (
            "huge",
            vec![(huge_path.as_bytes(), 'f', b"x", vec![])],
            "longer than 4095 bytes",
        ),
        ("nul", vec![(nul.as_slice(), 'f', b"x", vec![])], "NUL"),
        (
            "component",
            vec![(long.as_bytes(), 'f', b"x", vec![])],
            "longer than 255 bytes",
        ),
        (
            "xattr-empty",
            vec![(b"f", 'f', b"x", x(b"", b"v"))],
            "xattr name",
        ),
        (
            "xattr-big",
            vec![(b"f", 'f', b"x", x(b"user.big", &vec![1u8; 70_000]))],
            "a value of 70000 bytes",
        ),
        (
            "acl",
            vec![(b"f", 'f', b"x", x(b"system.posix_acl_access", b"garbage!"))],
            "not a POSIX ACL",
        ),
        (
            "link-target",
            vec![(b"f", 'f', b"x", vec![]), (b"h", 'h', b"../f", vec![])],
            "link target holds `..`",
        ),
    ];
    for (name, members, why) in cases {
        let p = t.path().join(format!("{name}.tar"));
        archive(&p, &members);
        let err = vz_err(&store, &["ingest", p.to_str().unwrap(), "--name", "x"]);
        assert!(err.contains(why), "{name}: {err}");
    }
    assert!(objects_state(&store).is_empty());
    assert_clean(&store);
}

#[test]
fn consume_never_takes_the_store_or_a_file_someone_can_still_write() {
    if !require_root("leases on files of other owners") {
        return;
    }
    let (t, store, src) = fixture_store();
    vz_ok(&store, &["create", "c1", "--template", "fx"]);
    for inside in [
        store.clone(),
        store.join("private/c1"),
        t.path().to_path_buf(),
    ] {
        let err = vz_err(
            &store,
            &[
                "ingest",
                inside.to_str().unwrap(),
                "--name",
                "x",
                "--consume",
            ],
        );
        assert!(err.contains("store"), "{}: {err}", inside.display());
    }
    let err = vz_err(
        &store,
        &[
            "ingest",
            store.join("private").to_str().unwrap(),
            "--name",
            "x",
        ],
    );
    assert!(err.contains("inside the store"), "{err}");
    assert_clean(&store);
    drop(src);
    // A file held open for writing is copied, not moved: writing it later
    // cannot change an object.
    let d = t.path().join("d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("held"), noise(9, 50_000)).unwrap();
    fs::write(d.join("free"), noise(10, 50_000)).unwrap();
    let mut held = fs::OpenOptions::new()
        .append(true)
        .open(d.join("held"))
        .unwrap();
    vz_ok(
        &store,
        &["ingest", d.to_str().unwrap(), "--name", "c", "--consume"],
    );
    assert!(d.join("held").exists() && !d.join("free").exists());
    held.write_all(b"tampered").unwrap();
    drop(held);
    assert_clean(&store);
}

#[test]
fn gnu_tar_restores_every_directory_time_of_an_exported_debian_root() {
    if !require_root("debootstrap root with devices") {
        return;
    }
    let root = debian_root("debian-minbase", None, "usr/bin/dpkg");
    let (t, store) = new_store();
    vz_ok(&store, &["ingest", root.to_str().unwrap(), "--name", "deb"]);
    let tar = t.path().join("deb.tar");
    vz_ok(
        &store,
        &["export", "deb", tar.to_str().unwrap(), "--format", "tar"],
    );
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    sh(&format!(
        "tar --xattrs --xattrs-include='*' --numeric-owner -xpf {} -C {}",
        tar.display(),
        x.display()
    ));
    same_mtime(&root, &x);
    assert_same_tree(&root, &x);
}

#[test]
fn exports_never_replace_what_appeared_and_clean_up_after_killed_ones() {
    let (t, store, _src) = fixture_store();
    let dest = t.path().join("out.tar");
    // Someone writes the destination while the export runs.
    let child = std::process::Command::new(bin())
        .args([
            "--store",
            store.to_str().unwrap(),
            "export",
            "fx",
            dest.to_str().unwrap(),
            "--format",
            "tar",
        ])
        .env("FAILPOINTS", "export-place=sleep(1500)")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    fs::write(&dest, b"IMPORTANT").unwrap();
    let out = child.wait_with_output().unwrap();
    if require_failpoints() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("appeared while the export ran"), "{err}");
        assert_eq!(fs::read(&dest).unwrap(), b"IMPORTANT");
    }
    // A killed export's partial file (its process gone) is removed by the
    // next export to the same place.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let stale = t.path().join(format!(".new.tar.vzstore-partial-{pid}"));
    fs::write(&stale, b"partial").unwrap();
    let new = t.path().join("new.tar");
    vz_ok(
        &store,
        &["export", "fx", new.to_str().unwrap(), "--format", "tar"],
    );
    assert!(!stale.exists() && new.exists());
    let left: Vec<_> = fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("vzstore-partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Destinations that name nothing new, or whose parent is missing.
    let err = vz_err(
        &store,
        &[
            "export",
            "fx",
            t.path().join("no/such/x.tar").to_str().unwrap(),
            "--format",
            "tar",
        ],
    );
    assert!(err.contains("parent directory does not exist"), "{err}");
    for fmt in ["dir", "oci"] {
        let out = std::process::Command::new(bin())
            .current_dir(t.path())
            .args([
                "--store",
                store.to_str().unwrap(),
                "export",
                "fx",
                ".",
                "--format",
                fmt,
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("names no new directory entry"),
            "{fmt}: {err}"
        );
    }
}

#[test]
fn replaced_members_and_floods_of_xattr_records_cost_nothing_lasting() {
    let (t, store) = new_store();
    let dir = hostile_dir(t.path());
    let v: serde_json::Value = serde_json::from_str(&vz_ok(
        &store,
        &[
            "ingest",
            dir.join("duplicate.tar").to_str().unwrap(),
            "--name",
            "dup",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(
        v["new_objects"], 1,
        "the replaced member's content was stored: {v}"
    );
    assert_eq!(objects_state(&store).len(), 1);
    // 100k pax xattr records for one member: refused as soon as the names
    // pass Linux's 64 KiB (not after reading them all into a list).
    let p = t.path().join("flood.tar");
    pax_flood(&p);
    let err = vz_err(&store, &["ingest", p.to_str().unwrap(), "--name", "flood"]);
    assert!(err.contains("bytes of xattr names"), "{err}");
    assert_clean(&store);
}

/// A tar of one empty file whose pax header holds 100k xattr records.
fn pax_flood(path: &Path) {
    use vzstore::archive::read::{Member, MemberKind};
    use vzstore::archive::write::TarWriter;
    let xattrs = (0..100_000)
        .map(|i| (format!("user.k{i}").into_bytes(), b"v".to_vec()))
        .collect();
    let mut w = TarWriter::new(fs::File::create(path).unwrap());
    let m = Member {
        name: b"f".to_vec(),
        kind: MemberKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        size: 0,
        link: Vec::new(),
        dev_major: 0,
        dev_minor: 0,
        xattrs,
        sparse: None,
        offset: 0,
    };
    w.begin(&m).unwrap();
    w.end_member().unwrap();
    w.finish().unwrap();
}
