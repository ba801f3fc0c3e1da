//! Helpers shared by the integration tests: running the binary, snapshots of trees
//! (bytes and all metadata) for comparison, and building the awkward fixture tree.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vzstore::store::fsutil;

/// Whether the calling test may run: it needs root (FUSE mounts, owners other
/// than the caller, device nodes, trusted xattrs, debootstrap). As any other user
/// it says why the test is skipped and returns false; as root every test runs.
pub fn require_root(why: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    // Straight to stderr: the test harness captures only `print!`/`eprint!`.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: needs root ({why})");
    false
}

/// Whether the calling test may run: it injects faults with `FAILPOINTS`, which
/// only a build with `--features failpoints` (tools/test.sh, CI) obeys.
pub fn require_failpoints() -> bool {
    if cfg!(feature = "failpoints") {
        return true;
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped: needs a build with --features failpoints"
    );
    false
}

/// Path of the built `vzstore` binary; `VZSTORE_TEST_BIN` overrides it (the
/// uplifted `target/release/vzstore` is shared by every worktree building into
/// the same target directory, so a concurrent build can replace it mid-run).
pub fn bin() -> PathBuf {
    match std::env::var_os("VZSTORE_TEST_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_vzstore")),
    }
}

/// Run `vzstore --store STORE args...` and return its output.
pub fn vz(store: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run vzstore")
}

/// Run `vzstore --store STORE args...` with extra environment variables (for
/// example `FAILPOINTS`) and return its output.
pub fn vz_env(store: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--store")
        .arg(store)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run vzstore")
}

/// Run and require success; returns stdout.
pub fn vz_ok(store: &Path, args: &[&str]) -> String {
    let out = vz(store, args);
    assert!(
        out.status.success(),
        "vzstore {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require failure; returns stderr.
pub fn vz_err(store: &Path, args: &[&str]) -> String {
    let out = vz(store, args);
    assert!(
        !out.status.success(),
        "vzstore {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh initialised store in a new temporary directory.
pub fn new_store() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let s = t.path().join("store");
    vz_ok(&s, &["init"]);
    (t, s)
}

/// Everything observable about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: Option<String>,
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// First path (in walk order) of the hardlink group, if nlink > 1.
    pub link_leader: Option<Vec<u8>>,
}

/// Snapshot a tree: path bytes (relative) -> metadata and content hash.
/// Sockets are left out (vzstore skips them).
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Snap> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    walk(root, Vec::new(), &mut out, &mut inodes);
    out
}

fn walk(
    p: &Path,
    rel: Vec<u8>,
    out: &mut BTreeMap<Vec<u8>, Snap>,
    inodes: &mut BTreeMap<u64, Vec<u8>>,
) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let ft = m.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        return;
    };
    let link_leader = if !ft.is_dir() && m.nlink() > 1 {
        Some(inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone())
    } else {
        None
    };
    let content = ft.is_file().then(|| {
        let f = fs::File::open(p).unwrap();
        let segs = fsutil::data_segments(&f, m.len()).unwrap();
        fsutil::hash_segments(&f, &segs, m.len())
            .unwrap()
            .to_hex()
            .to_string()
    });
    out.insert(
        rel.clone(),
        Snap {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: (m.mtime(), m.mtime_nsec()),
            size: if ft.is_dir() { 0 } else { m.len() },
            content,
            target: ft
                .is_symlink()
                .then(|| fs::read_link(p).unwrap().as_os_str().as_bytes().to_vec()),
            rdev: if ft.is_char_device() || ft.is_block_device() {
                m.rdev()
            } else {
                0
            },
            xattrs: fsutil::read_xattrs(p).unwrap(),
            link_leader,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(n.as_bytes());
            walk(&p.join(&n), r, out, inodes);
        }
    }
}

/// Assert two trees are identical, naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    for (k, va) in &sa {
        match sb.get(k) {
            None => panic!(
                "{:?} missing from {}",
                String::from_utf8_lossy(k),
                b.display()
            ),
            Some(vb) => assert_eq!(va, vb, "{:?} differs", String::from_utf8_lossy(k)),
        }
    }
    assert_eq!(sa.len(), sb.len(), "{} has extra entries", b.display());
}

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let t = Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn write(p: &Path, data: &[u8], mode: u32) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut ctr = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            blake3::hash(&[seed.to_le_bytes(), ctr.to_le_bytes()].concat()).as_bytes(),
        );
        ctr += 1;
    }
    out.truncate(len);
    out
}

/// Build the awkward fixture: every file kind and metadata case vzstore must keep.
pub fn build_fixture(root: &Path) {
    use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Uid};
    fs::create_dir_all(root).unwrap();
    let d = |p: &str, mode: u32| {
        let p = root.join(p);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    d("etc", 0o755);
    d("tmp", 0o1777);
    d("root", 0o700);
    d("usr/bin", 0o755);
    d("setgid-dir", 0o2775);
    write(&root.join("etc/hostname"), b"fixture\n", 0o644);
    write(&root.join("etc/empty"), b"", 0o600);
    write(&root.join("usr/bin/su"), &noise(1, 40_000), 0o4755);
    write(&root.join("usr/bin/wall"), &noise(2, 3_000), 0o2755);
    write(&root.join("usr/bin/big"), &noise(3, 3 << 20), 0o755);
    write(&root.join("usr/bin/big-copy"), &noise(3, 3 << 20), 0o755); // same content
    write(&root.join("usr/bin/ping"), &noise(4, 9_000), 0o755);
    // A v2 file capability: cap_net_raw permitted + effective.
    let mut cap = Vec::new();
    cap.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    cap.extend_from_slice(&0u32.to_le_bytes());
    rustix::fs::setxattr(
        root.join("usr/bin/ping"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("etc/hostname"),
        "user.note",
        b"\x00binary\xff",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        root.join("etc"),
        "trusted.dir",
        b"d",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // Hardlinks: three names for one inode, across directories.
    write(&root.join("usr/bin/perl"), &noise(5, 20_000), 0o755);
    fs::hard_link(root.join("usr/bin/perl"), root.join("usr/bin/perl5.36")).unwrap();
    fs::hard_link(root.join("usr/bin/perl"), root.join("etc/perl-link")).unwrap();
    // An empty file hardlinked too.
    write(&root.join("etc/e1"), b"", 0o644);
    fs::hard_link(root.join("etc/e1"), root.join("etc/e2")).unwrap();
    // Sparse file: 1 GiB with three small data islands.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(root.join("var-sparse.img")).unwrap();
        f.set_len(1 << 30).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(&noise(6, 10_000), 512 << 20).unwrap();
        f.write_all_at(b"tail", (1 << 30) - 4).unwrap();
    }
    // Non-UTF-8 names, for a file and a directory.
    write(&root.join(OsStr::from_bytes(b"caf\xe9")), b"latin1", 0o644);
    fs::create_dir(root.join(OsStr::from_bytes(b"dir-\xff\xfe"))).unwrap();
    write(
        &root.join(OsStr::from_bytes(b"dir-\xff\xfe/inner")),
        b"x",
        0o644,
    );
    // A deep path (about 2,000 bytes).
    let mut deep = root.to_path_buf();
    for i in 0..100 {
        deep.push(format!("level-{i:03}-abcdefghij"));
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"deep", 0o644);
    // Symlinks: a loop, a dangling one, an absolute one, owned by someone else.
    std::os::unix::fs::symlink("loop-b", root.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", root.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("usr/bin/su", root.join("su-link")).unwrap();
    rustix::fs::chownat(
        CWD,
        root.join("su-link"),
        Some(Uid::from_raw(42)),
        Some(Gid::from_raw(43)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    rustix::fs::lsetxattr(
        root.join("su-link"),
        "trusted.on-link",
        b"l",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // Device nodes and a fifo.
    d("dev", 0o755);
    rustix::fs::mknodat(
        CWD,
        root.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("dev/loop0"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 0),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("dev/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o620),
        0,
    )
    .unwrap();
    // Owners other than root.
    write(&root.join("etc/owned"), b"owned", 0o640);
    rustix::fs::chownat(
        CWD,
        root.join("etc/owned"),
        Some(Uid::from_raw(1234)),
        Some(Gid::from_raw(5678)),
        AtFlags::empty(),
    )
    .unwrap();
    // A socket, which ingest skips with a warning.
    let _sock = std::os::unix::net::UnixListener::bind(root.join("tmp/socket")).unwrap();
    // Times: nanoseconds everywhere, one before 1970; directories last.
    set_mtime(&root.join("etc/hostname"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("etc/owned"), -86_400, 5);
    set_mtime(&root.join("su-link"), 1_500_000_000, 999_999_999);
    set_mtime(&root.join("dev"), 1_400_000_000, 1);
    set_mtime(root, 1_700_000_000, 42);
}

/// The mount backends; the semantic suites run against each (`both_backends!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Fuse,
    Kernel,
}

impl Backend {
    /// The `--backend` value.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Fuse => "fuse",
            Backend::Kernel => "kernel",
        }
    }
}

/// `both_backends!(f)` after `fn f(b: Backend)` makes the tests `f::fuse` and
/// `f::kernel`.
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[test]
            fn fuse() {
                super::$name(crate::common::Backend::Fuse)
            }
            #[test]
            fn kernel() {
                super::$name(crate::common::Backend::Kernel)
            }
        }
    };
}
pub(crate) use both_backends;

/// A mounted container, unmounted (via `vzstore umount`) when dropped.
pub struct Mounted {
    pub store: PathBuf,
    pub name: String,
    pub path: PathBuf,
}

impl Mounted {
    /// Mount container `name` at its default mount point; fails the test loudly
    /// if the mount does not come up.
    pub fn new(store: &Path, name: &str) -> Mounted {
        Mounted::mount(store, name, &[], false, &[])
    }

    /// Mount with extra `mount` flags and the daemon logging at info level.
    pub fn with_log(store: &Path, name: &str, flags: &[&str]) -> Mounted {
        Mounted::mount(store, name, flags, true, &[])
    }

    /// Mount with extra environment variables, which the mount daemon inherits
    /// (for example `FAILPOINTS=journal-append=return(ENOSPC)`).
    pub fn with_env(store: &Path, name: &str, env: &[(&str, &str)]) -> Mounted {
        Mounted::mount(store, name, &[], false, env)
    }

    fn mount(
        store: &Path,
        name: &str,
        flags: &[&str],
        info_log: bool,
        env: &[(&str, &str)],
    ) -> Mounted {
        let mut cmd = Command::new(bin());
        cmd.arg("--store")
            .arg(store)
            .args(["mount", name])
            .args(flags)
            .envs(env.iter().copied());
        if info_log {
            cmd.env("RUST_LOG", "info");
        }
        let out = cmd.output().expect("run vzstore mount");
        assert!(
            out.status.success(),
            "vzstore mount {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = store.join("root").join(name);
        let st = fs::metadata(&path).expect("stat of the mount point");
        let parent = fs::metadata(store.join("root")).expect("stat of root/");
        assert_ne!(
            st.dev(),
            parent.dev(),
            "{} is not a mounted container root",
            path.display()
        );
        Mounted {
            store: store.to_path_buf(),
            name: name.to_string(),
            path,
        }
    }

    /// Unmount now (and check that it worked).
    pub fn umount(mut self) {
        vz_ok(&self.store, &["umount", &self.name]);
        self.name.clear();
    }

    /// Unmount now, requiring `vzstore umount` to fail; returns its stderr.
    pub fn umount_err(mut self) -> String {
        let err = vz_err(&self.store, &["umount", &self.name]);
        self.name.clear();
        err
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = vz(&self.store, &["umount", &self.name]);
        }
    }
}

/// A small ext4 file system on a loop device, mounted at `path` for the life of
/// the value: for real "disk full" tests. Dropping it unmounts it (recursively,
/// lazily as a last resort) and detaches its loop device, even after a panic.
/// Drop anything mounted inside it (a [`Mounted`]) first.
pub struct LoopFs {
    pub img: PathBuf,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

fn run_cmd(prog: &str, args: &[&OsStr]) -> Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"))
}

impl LoopFs {
    /// A fresh, empty ext4 file system of `mib` MiB.
    pub fn new(mib: u64) -> LoopFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("fs.img");
        let path = dir.path().join("mnt");
        fs::create_dir(&path).unwrap();
        let size = format!("{mib}M");
        let out = run_cmd(
            "truncate",
            &[OsStr::new("-s"), OsStr::new(&size), img.as_os_str()],
        );
        assert!(out.status.success(), "truncate: {out:?}");
        let out = run_cmd(
            "mkfs.ext4",
            &[OsStr::new("-q"), OsStr::new("-F"), img.as_os_str()],
        );
        assert!(out.status.success(), "mkfs.ext4: {out:?}");
        // From here on Drop cleans up whatever was set up.
        let lfs = LoopFs {
            img,
            path,
            _dir: dir,
        };
        let out = run_cmd(
            "mount",
            &[
                OsStr::new("-o"),
                OsStr::new("loop"),
                lfs.img.as_os_str(),
                lfs.path.as_os_str(),
            ],
        );
        assert!(
            out.status.success(),
            "mount -o loop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lfs
    }

    /// Free bytes of the file system (for the superuser).
    pub fn free(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.path).unwrap();
        st.f_bfree * st.f_frsize
    }
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo;
/// octal escapes such as `\040` are decoded).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            let b = m.as_bytes();
            let mut v = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && i + 3 < b.len() {
                    let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
                    if let Ok(c) = u8::from_str_radix(oct, 8) {
                        v.push(c);
                        i += 4;
                        continue;
                    }
                }
                v.push(b[i]);
                i += 1;
            }
            PathBuf::from(OsStr::from_bytes(&v))
        })
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Nested mounts first (a container's FUSE mount: its daemon saves and
        // exits), then the file system itself, retried while the daemons exit.
        let start = std::time::Instant::now();
        loop {
            let mounts = mounts_under(&self.path);
            if mounts.is_empty() {
                break;
            }
            for m in &mounts {
                let _ = run_cmd("umount", &[m.as_os_str()]);
            }
            if start.elapsed() > std::time::Duration::from_secs(10) {
                eprintln!(
                    "LoopFs: {} still busy; detaching lazily",
                    self.path.display()
                );
                for m in &mounts {
                    let _ = run_cmd("umount", &[OsStr::new("-l"), m.as_os_str()]);
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // `mount -o loop` sets autoclear, but detach explicitly in case.
        let out = run_cmd("losetup", &[OsStr::new("-j"), self.img.as_os_str()]);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(dev) = line.split(':').next().filter(|d| d.starts_with("/dev/")) {
                run_cmd("losetup", &[OsStr::new("-d"), OsStr::new(dev)]);
            }
        }
    }
}

/// A store holding the fixture as template `fx`, and the fixture's source.
pub fn fixture_store() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (t, store) = new_store();
    let src = t.path().join("src");
    build_fixture(&src);
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "fx"]);
    (t, store, src)
}

/// blake3 and mode of every object file: to prove no object ever changes.
pub fn objects_state(store: &Path) -> BTreeMap<PathBuf, (String, u32, u64)> {
    let mut out = BTreeMap::new();
    for fan in fs::read_dir(store.join("objects")).unwrap() {
        for o in fs::read_dir(fan.unwrap().path()).unwrap() {
            let p = o.unwrap().path();
            let m = fs::metadata(&p).unwrap();
            let data = fs::read(&p).unwrap();
            out.insert(
                p,
                (
                    blake3::hash(&data).to_hex().to_string(),
                    m.mode(),
                    m.nlink(),
                ),
            );
        }
    }
    out
}

/// `du -s -B1 PATH`: allocated bytes, as the operator would measure them.
pub fn du_b1(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A debootstrap bookworm `minbase` root with `include`d packages, built once into
/// `/var/cache/vzstore/NAME` (network to a Debian mirror needed the first time;
/// `probe` is a path that exists once it is complete). Apt's downloaded .debs
/// are deleted, as a template would be.
pub fn debian_root(name: &str, include: Option<&str>, probe: &str) -> PathBuf {
    let dir = PathBuf::from("/var/cache/vzstore").join(name);
    if dir.join(probe).exists() {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if let Some(pkgs) = include {
        cmd.arg(format!("--include={pkgs}"));
    }
    let st = cmd
        .arg("bookworm")
        .arg(&dir)
        .status()
        .expect("debootstrap is not installed (tools/setup.sh installs it)");
    assert!(st.success(), "debootstrap of {name} failed");
    for e in fs::read_dir(dir.join("var/cache/apt/archives"))
        .unwrap()
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "deb") {
            fs::remove_file(e.path()).unwrap();
        }
    }
    dir
}

/// Fill every free block of the file system at `dir` (a file `filler`).
pub fn fill_up(dir: &Path) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let p = dir.join("filler");
    let f = fs::File::create(&p).unwrap();
    let mut off = 0u64;
    for chunk in [1usize << 20, 4096, 1] {
        let buf = vec![0x5a; chunk];
        while f
            .write_all_at(&buf, off)
            .and_then(|()| f.sync_data())
            .is_ok()
        {
            off += chunk as u64;
        }
    }
    p
}
