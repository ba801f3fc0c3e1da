//! OCI images in and out: layouts, OCI archives and docker archives (made
//! by tests/data/hostile_archives.py, and by podman and skopeo from a real
//! Debian root), layers with whiteouts and opaque directories, digests, the
//! kept image config; exports that skopeo inspects, umoci unpacks to the same
//! tree, and podman loads and runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::archive_io::digest;
use crate::common::*;

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect(prog);
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_clean(store: &Path) {
    let out = vz_ok(store, &["verify"]);
    assert!(out.contains("-> clean"), "{out}");
}

fn hostile(t: &Path) -> PathBuf {
    let dir = t.join("hostile");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile_archives.py");
    run(
        "python3",
        &[
            script.to_str().unwrap(),
            "--skip-bombs",
            dir.to_str().unwrap(),
        ],
    );
    dir
}

fn show(store: &Path, t: &str) -> serde_json::Value {
    serde_json::from_str(&vz_ok(store, &["templates", "show", t, "--json"])).unwrap()
}

#[test]
fn layers_apply_in_order_with_whiteouts_and_checked_digests() {
    let (t, store) = new_store();
    let h = hostile(t.path());
    let good = format!("oci:{}", h.join("oci-good").display());
    vz_ok(&store, &["ingest", &good, "--name", "good"]);
    let out = t.path().join("good");
    vz_ok(&store, &["export", "good", out.to_str().unwrap()]);
    assert!(
        !out.join("etc/hostname").exists(),
        "the whiteout removed it"
    );
    assert!(out.join("etc").is_dir());
    let opt: Vec<_> = fs::read_dir(out.join("opt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        opt,
        ["new"],
        "the opaque directory hides the lower layer's entries"
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(out.join("bin/ash")).unwrap(),
        fs::metadata(out.join("bin/busybox")).unwrap(),
    );
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "a hardlink");
    assert_eq!(
        fs::read_link(out.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let v = show(&store, "good");
    assert_eq!(
        v["image_config"]["config"]["Cmd"],
        serde_json::json!(["/bin/sh"])
    );
    assert_eq!(
        v["image_config"]["config"]["Env"],
        serde_json::json!(["PATH=/usr/bin"])
    );
    assert_eq!(v["image_config"]["architecture"], "amd64");
    assert!(vz_ok(&store, &["templates", "show", "good"]).contains("/bin/sh"));
    // The same image as an OCI archive, a docker archive, and by tag.
    let want = digest(&store, "good");
    for (i, src) in [
        format!("oci-archive:{}", h.join("oci-archive-good.tar").display()),
        format!(
            "docker-archive:{}",
            h.join("docker-archive-good.tar").display()
        ),
        format!(
            "docker-archive:{}:localhost/good:latest",
            h.join("docker-archive-good.tar").display()
        ),
        format!("{good}:latest"),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("same{i}");
        vz_ok(&store, &["ingest", src, "--name", &name]);
        assert_eq!(digest(&store, &name), want, "{src}");
    }
    let before = objects_state(&store);
    let refuse = |src: String, why: &str| {
        let err = vz_err(&store, &["ingest", &src, "--name", "bad"]);
        assert!(
            err.contains(why) && err.contains("store is unchanged"),
            "{src}: {err}"
        );
    };
    refuse(
        format!("oci:{}", h.join("oci-bad-digest").display()),
        "not to its digest",
    );
    refuse(
        format!("oci:{}", h.join("whiteout-dotdot").display()),
        "whiteout",
    );
    refuse(
        format!("oci:{}", h.join("whiteout-escape").display()),
        "`..`",
    );
    refuse(format!("{good}:nosuchtag"), "no single image tagged");
    refuse(
        format!("oci:{}", h.join("absolute.tar").display()),
        "not a directory",
    );
    // A missing blob, and a layer whose bytes changed but still decompress.
    let broken = t.path().join("broken");
    run(
        "cp",
        &[
            "-a",
            h.join("oci-good").to_str().unwrap(),
            broken.to_str().unwrap(),
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(broken.join("index.json")).unwrap()).unwrap();
    let md = manifest["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(broken.join("blobs/sha256").join(md)).unwrap()).unwrap();
    let layer = m["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    fs::remove_file(broken.join("blobs/sha256").join(layer)).unwrap();
    refuse(
        format!("oci:{}", broken.display()),
        "is missing from the image",
    );
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value) -> Option<()>;
    let cases: [(&str, Edit); 3] = [
        ("no-rootfs", &|c| {
            c.as_object_mut().unwrap().remove("rootfs").map(drop)
        }),
        ("short", &|c| {
            c["rootfs"]["diff_ids"]
                .as_array_mut()
                .unwrap()
                .pop()
                .map(drop)
        }),
        ("windows", &|c| {
            c["os"] = "windows".into();
            Some(())
        }),
    ];
    for (name, edit) in cases {
        let dir = t.path().join(name);
        run(
            "cp",
            &[
                "-a",
                h.join("oci-good").to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        rewrite_config(&dir, edit);
        let why = if name == "windows" {
            "Linux trees"
        } else {
            "diff_ids"
        };
        refuse(format!("oci:{}", dir.display()), why);
    }
    assert_eq!(
        objects_state(&store),
        before,
        "a refused image left objects"
    );
    assert!(vz(&store, &["templates", "show", "bad"]).status.code() == Some(1));
    assert_clean(&store);
}

/// Change the config of the layout at `dir` and fix the digests that name it.
fn rewrite_config(dir: &Path, edit: &dyn Fn(&mut serde_json::Value) -> Option<()>) {
    use sha2::Digest;
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |v: &serde_json::Value| {
        let bytes = serde_json::to_vec(v).unwrap();
        let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
        fs::write(blob(&d), &bytes).unwrap();
        (d, bytes.len())
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(blob(&md)).unwrap()).unwrap();
    let cd = m["config"]["digest"].as_str().unwrap().to_string();
    let mut c: serde_json::Value = serde_json::from_slice(&fs::read(blob(&cd)).unwrap()).unwrap();
    edit(&mut c).expect("edited");
    let (d, n) = put(&c);
    m["config"]["digest"] = d.into();
    m["config"]["size"] = n.into();
    let (d, n) = put(&m);
    index["manifests"][0]["digest"] = d.into();
    index["manifests"][0]["size"] = n.into();
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

const UL: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

/// `podman run` that works on this machine kind: runc (crun refuses the
/// hybrid cgroup setup), no network, limits within the sandbox's.
fn podman_run(image: &str, cmd: &[&str]) -> String {
    let mut args = vec!["--runtime", "runc", "run", "--rm", "--network=none"];
    args.extend(UL);
    args.push(image);
    args.extend(cmd);
    run("podman", &args)
}

struct PodmanImages(Vec<String>);
impl Drop for PodmanImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("podman").args(["rmi", "-f", i]).output();
        }
    }
}

#[test]
fn podman_and_skopeo_images_in_and_out() {
    if !require_root("podman storage, debootstrap root") {
        return;
    }
    let root = debian_root("debian-minbase", None, "usr/bin/dpkg");
    let (t, store) = new_store();
    let _images = PodmanImages(vec![
        "localhost/vzt-base:1".into(),
        "localhost/vzt-two:1".into(),
        "localhost/vzt-back:1".into(),
    ]);
    let tar = t.path().join("root.tar");
    run(
        "tar",
        &[
            "--format=pax",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    vz_ok(&store, &["ingest", tar.to_str().unwrap(), "--name", "tar"]);
    let want = digest(&store, "tar");
    run(
        "podman",
        &["import", tar.to_str().unwrap(), "localhost/vzt-base:1"],
    );
    // A second layer with whiteouts and an opaque directory, built offline.
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(
        ctx.join("Containerfile"),
        "FROM localhost/vzt-base:1\n\
         RUN rm -rf /usr/share/doc /etc/cron.daily /etc/issue.net && mkdir -p /x /etc/cron.daily && echo y > /x/y && touch /etc/cron.daily/new\n\
         ENV FOO=bar\nCMD [\"/bin/bash\"]\n",
    )
    .unwrap();
    let mut build = vec![
        "build",
        "--runtime",
        "runc",
        "--network=none",
        "-t",
        "localhost/vzt-two:1",
    ];
    build.extend(UL);
    build.push(ctx.to_str().unwrap());
    run("podman", &build);
    let oa = t.path().join("two.oci.tar");
    let da = t.path().join("two.docker.tar");
    run(
        "podman",
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oa.to_str().unwrap(),
            "localhost/vzt-two:1",
        ],
    );
    run(
        "podman",
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            da.to_str().unwrap(),
            "localhost/vzt-two:1",
        ],
    );
    let zdir = t.path().join("base-zstd");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            "containers-storage:localhost/vzt-base:1",
            &format!("oci:{}:1", zdir.display()),
        ],
    );
    // The imported base, through skopeo's zstd layout: the tar's tree exactly.
    vz_ok(
        &store,
        &[
            "ingest",
            &format!("oci:{}:1", zdir.display()),
            "--name",
            "zstd",
        ],
    );
    assert_eq!(digest(&store, "zstd"), want);
    for (src, name) in [
        (format!("oci-archive:{}", oa.display()), "oa"),
        (format!("docker-archive:{}", da.display()), "da"),
    ] {
        vz_ok(&store, &["ingest", &src, "--name", name]);
        let ex = t.path().join(name);
        vz_ok(&store, &["export", name, ex.to_str().unwrap()]);
        assert!(
            !ex.join("usr/share/doc").exists() && !ex.join("etc/issue.net").exists(),
            "{name}"
        );
        assert_eq!(fs::read(ex.join("x/y")).unwrap(), b"y\n");
        let cron: Vec<_> = fs::read_dir(ex.join("etc/cron.daily"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(cron, ["new"], "{name}");
        assert!(ex.join("usr/bin/dpkg").is_file());
        let v = show(&store, name);
        assert!(
            v["image_config"]["config"]["Env"]
                .to_string()
                .contains("FOO=bar"),
            "{v}"
        );
        assert_eq!(
            v["image_config"]["config"]["Cmd"],
            serde_json::json!(["/bin/bash"])
        );
    }
    assert_eq!(digest(&store, "oa"), digest(&store, "da"));
    // Out: an OCI layout skopeo inspects, umoci unpacks to the same tree,
    // and podman loads and runs, carrying the config; back in unchanged.
    for comp in ["gzip", "zstd", "none"] {
        let dir = t.path().join(format!("out-{comp}"));
        vz_ok(
            &store,
            &[
                "export",
                "oa",
                dir.to_str().unwrap(),
                "--format",
                "oci",
                "--compression",
                comp,
                "--tag",
                "vzt",
            ],
        );
        let inspect: serde_json::Value = serde_json::from_str(&run(
            "skopeo",
            &["inspect", &format!("oci:{}:vzt", dir.display())],
        ))
        .unwrap();
        assert_eq!(inspect["Architecture"], "amd64");
        vz_ok(
            &store,
            &[
                "ingest",
                &format!("oci:{}", dir.display()),
                "--name",
                "back",
            ],
        );
        assert_eq!(digest(&store, "back"), digest(&store, "oa"), "{comp}");
    }
    let dir = t.path().join("out-gzip");
    let bundle = t.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:vzt", dir.display()),
            bundle.to_str().unwrap(),
        ],
    );
    let ex = t.path().join("oa-dir");
    vz_ok(&store, &["export", "oa", ex.to_str().unwrap()]);
    assert_same_tree(&ex, &bundle.join("rootfs"));
    run(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:vzt", dir.display()),
            "containers-storage:localhost/vzt-back:1",
        ],
    );
    let out = podman_run(
        "localhost/vzt-back:1",
        &["sh", "-c", "cat /x/y; echo $FOO; cat /etc/debian_version"],
    );
    assert!(out.starts_with("y\nbar\n12."), "{out}");
    // `podman load` takes the layout directory itself (and names the image
    // after its path, which must be lowercase: tempdir names are not).
    let lower = PathBuf::from(format!("/var/tmp/vzstore-load-{}", std::process::id()));
    let _ = fs::remove_dir_all(&lower);
    run(
        "cp",
        &["-a", dir.to_str().unwrap(), lower.to_str().unwrap()],
    );
    let out = Command::new("podman")
        .args(["load", "-i", lower.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let loaded =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let name = loaded
        .lines()
        .find_map(|l| {
            l.strip_prefix("Loaded image: ")
                .or_else(|| l.strip_prefix("Loaded image(s): "))
        })
        .unwrap_or_else(|| panic!("podman load said: {loaded}"))
        .trim()
        .to_string();
    let _loaded = PodmanImages(vec![name.clone()]);
    let _ = fs::remove_dir_all(&lower);
    assert_eq!(podman_run(&name, &["cat", "/x/y"]), "y\n");
    assert_clean(&store);
}
