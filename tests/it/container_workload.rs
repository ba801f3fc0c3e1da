//! A real workload: a debootstrap Debian root (with python3) as a template, a
//! container chrooted into, programs that read and write, and a remount.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

/// The larger debootstrap bookworm root (python3, perl, openssh-server, curl, git).
pub fn debian_large() -> PathBuf {
    debian_root(
        "debian-large",
        Some("python3,perl,openssh-server,curl,git"),
        "usr/bin/python3",
    )
}

fn chroot(root: &std::path::Path, script: &str) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-ec", script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chroot script failed:\n{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chroot_runs_python_useradd_su_and_dpkg(b: Backend) {
    if !require_root("debootstrap, chroot and a FUSE mount") {
        return;
    }
    let src = debian_large();
    let (_t, store) = new_store();
    vz_ok(
        &store,
        &["ingest", src.to_str().unwrap(), "--name", "debian"],
    );
    vz_ok(
        &store,
        &[
            "create",
            "ct",
            "--template",
            "debian",
            "--backend",
            b.name(),
        ],
    );
    let m = Mounted::new(&store, "ct");
    let out = chroot(
        &m.path,
        r#"
python3 -c 'import json, email, http.client, sqlite3; open("/root/py.json","w").write(json.dumps({"ok": 1}))'
cat /root/py.json; echo
useradd -m -s /bin/sh alice
su alice -c 'echo from-alice > ~/note; id -un'
mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/share/vztest
printf 'Package: vztest\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n' > /tmp/pkg/DEBIAN/control
echo payload > /tmp/pkg/usr/share/vztest/file
dpkg-deb --build /tmp/pkg /tmp/vztest.deb >/dev/null
dpkg -i /tmp/vztest.deb >/dev/null
dpkg -s vztest | grep Status
git --version >/dev/null
perl -e 'print "perl-ok\n"'
"#,
    );
    assert!(out.contains(r#"{"ok": 1}"#), "{out}");
    assert!(out.contains("alice"), "{out}");
    assert!(out.contains("Status: install ok installed"), "{out}");
    assert!(out.contains("perl-ok"), "{out}");
    m.umount();

    let m = Mounted::new(&store, "ct");
    let out = chroot(
        &m.path,
        "cat /home/alice/note; dpkg -s vztest | grep Status; cat /usr/share/vztest/file; cat /root/py.json; id alice",
    );
    assert!(out.contains("from-alice"), "{out}");
    assert!(out.contains("install ok installed"), "{out}");
    assert!(out.contains("payload"), "{out}");
    m.umount();
    // The template is untouched.
    let out = Command::new("grep")
        .arg("alice")
        .arg(src.join("etc/passwd"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "alice leaked into the template source"
    );
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}
both_backends!(chroot_runs_python_useradd_su_and_dpkg);
