//! Property test of the container tree itself, without FUSE or root: random
//! operations applied to a [`Tree`] (whose base is a small template ingested
//! into a temporary store) and, with `std::fs`, to a plain directory holding the
//! same template. Every operation must have the same outcome (success or the
//! same errno), and after each sequence both must show the same tree: names,
//! kinds, sizes, content, modes, owners, user xattrs, link counts, hardlink
//! groups and symlink targets.
//!
//! Then the tree is dropped, after a compaction or without one (a killed daemon:
//! the journal holds every change as it happened), loaded again from its private
//! directory and compared again; and once more from the snapshot alone.
//!
//! The harness plays the kernel's part of each request, the checks the VFS makes
//! before a request reaches a FUSE daemon: walking the path (every symlink target
//! here dangles, so following one fails with ENOENT), `EEXIST` for a name to be
//! created, and rename's rules for existing targets and ancestors.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use proptest::prelude::*;
use rustix::fs::{CWD, RenameFlags, XattrFlags};
use vzstore::container::error::FsError;
use vzstore::container::inode::{
    Caller, Ino, NewNode, OpenMode, ROOT, RenameMode, SetAttr, XattrMode,
};
use vzstore::container::tree::Tree;
use vzstore::container::tree::content::{self, CopyUp};
use vzstore::ingest::{NoProgress, ingest_dir};
use vzstore::store::Store;
use vzstore::store::catalog::Catalog;
use vzstore::store::fsutil;
use vzstore::store::integrity::ObjectChecker;
use vzstore::store::manifest::{Kind, Manifest};

use crate::common::{noise, objects_state};

/// Every path an operation may name: template names, new names, and paths
/// below names that may become files or symlinks.
const PATHS: &[&str] = &[
    "f0", "f1", "f2", "n0", "d0", "d0/g0", "d0/g1", "d0/d2", "d0/d2/k0", "d1", "d1/h0", "x0",
];
const XATTRS: &[&str] = &["user.a", "user.b", "user.tpl"];

/// The base template: two directories, files (one pair with equal content, one
/// hardlinked pair), a user xattr and a dangling symlink.
fn template(dir: &Path) {
    fs::create_dir_all(dir.join("d0")).unwrap();
    fs::create_dir_all(dir.join("d1")).unwrap();
    fs::write(dir.join("f0"), noise(1, 30_000)).unwrap();
    fs::write(dir.join("f1"), noise(2, 100)).unwrap();
    fs::hard_link(dir.join("f1"), dir.join("f2")).unwrap();
    fs::write(dir.join("d0/g0"), noise(3, 5000)).unwrap();
    fs::write(dir.join("d1/h0"), noise(1, 30_000)).unwrap(); // same content as f0
    std::os::unix::fs::symlink("nowhere/t", dir.join("n0")).unwrap();
    for (p, mode) in [("d0", 0o755), ("d1", 0o750), ("f0", 0o644), ("f1", 0o640)] {
        fs::set_permissions(dir.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::set_permissions(dir.join("d0/g0"), fs::Permissions::from_mode(0o755)).unwrap();
    rustix::fs::setxattr(dir.join("f1"), "user.tpl", b"v", XattrFlags::empty()).unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Mkdir {
        p: usize,
        mode: u32,
    },
    Create {
        p: usize,
        mode: u32,
    },
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
    Rmdir {
        p: usize,
    },
    Rename {
        a: usize,
        b: usize,
        mode: RenameMode,
    },
    Link {
        a: usize,
        b: usize,
    },
    Symlink {
        p: usize,
        target: u8,
    },
    Chmod {
        p: usize,
        mode: u32,
    },
    SetXattr {
        p: usize,
        name: usize,
        len: usize,
        mode: XattrMode,
    },
    RemoveXattr {
        p: usize,
        name: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let p = || 0..PATHS.len();
    // Owners keep rwx: as a user, the plain directory checks permissions and the
    // tree does not (the kernel does that for a mount).
    let mode = || (0u32..0o777).prop_map(|m| m | 0o700);
    let rename_mode = prop_oneof![
        Just(RenameMode::Replace),
        Just(RenameMode::NoReplace),
        Just(RenameMode::Exchange),
    ];
    let xattr_mode = prop_oneof![
        Just(XattrMode::Any),
        Just(XattrMode::Create),
        Just(XattrMode::Replace),
    ];
    prop_oneof![
        1 => (p(), mode()).prop_map(|(p, mode)| Op::Mkdir { p, mode }),
        1 => (p(), mode()).prop_map(|(p, mode)| Op::Create { p, mode }),
        2 => (p(), 0u64..40_000, 1usize..9000, any::<u64>())
            .prop_map(|(p, off, len, seed)| Op::Write { p, off, len, seed }),
        1 => (p(), 0u64..50_000).prop_map(|(p, len)| Op::Truncate { p, len }),
        1 => p().prop_map(|p| Op::Unlink { p }),
        1 => p().prop_map(|p| Op::Rmdir { p }),
        2 => (p(), p(), rename_mode).prop_map(|(a, b, mode)| Op::Rename { a, b, mode }),
        1 => (p(), p()).prop_map(|(a, b)| Op::Link { a, b }),
        1 => (p(), any::<u8>()).prop_map(|(p, target)| Op::Symlink { p, target }),
        1 => (p(), mode()).prop_map(|(p, mode)| Op::Chmod { p, mode }),
        1 => (p(), 0..XATTRS.len(), 0usize..64, xattr_mode)
            .prop_map(|(p, name, len, mode)| Op::SetXattr { p, name, len, mode }),
        1 => (p(), 0..XATTRS.len()).prop_map(|(p, name)| Op::RemoveXattr { p, name }),
    ]
}

fn target(t: u8) -> String {
    format!("nowhere/{t}")
}

// ---- The plain directory -------------------------------------------------

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Apply `op` under `root` with std::fs; the outcome is Ok or the errno.
fn apply_plain(root: &Path, op: &Op) -> Result<(), i32> {
    let j = |i: usize| root.join(PATHS[i]);
    let chmod = |p: &Path, mode: u32| fs::set_permissions(p, fs::Permissions::from_mode(mode));
    let r = match *op {
        // The exact mode whatever the umask, as the tree's caller passes it.
        Op::Mkdir { p, mode } => fs::DirBuilder::new()
            .mode(mode)
            .create(j(p))
            .and_then(|()| chmod(&j(p), mode)),
        Op::Create { p, mode } => OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(j(p))
            .and_then(|_| chmod(&j(p), mode)),
        Op::Write { p, off, len, seed } => OpenOptions::new()
            .write(true)
            .open(j(p))
            .and_then(|f| f.write_all_at(&noise(seed, len), off)),
        Op::Truncate { p, len } => OpenOptions::new()
            .write(true)
            .open(j(p))
            .and_then(|f| f.set_len(len)),
        Op::Unlink { p } => fs::remove_file(j(p)),
        Op::Rmdir { p } => fs::remove_dir(j(p)),
        Op::Rename { a, b, mode } => {
            let flags = match mode {
                RenameMode::Replace => RenameFlags::empty(),
                RenameMode::NoReplace => RenameFlags::NOREPLACE,
                RenameMode::Exchange => RenameFlags::EXCHANGE,
            };
            rustix::fs::renameat_with(CWD, j(a), CWD, j(b), flags).map_err(Into::into)
        }
        Op::Link { a, b } => fs::hard_link(j(a), j(b)),
        Op::Symlink { p, target: t } => std::os::unix::fs::symlink(target(t), j(p)),
        Op::Chmod { p, mode } => chmod(&j(p), mode),
        Op::SetXattr { p, name, len, mode } => {
            let flags = match mode {
                XattrMode::Any => XattrFlags::empty(),
                XattrMode::Create => XattrFlags::CREATE,
                XattrMode::Replace => XattrFlags::REPLACE,
            };
            rustix::fs::setxattr(j(p), XATTRS[name], &noise(len as u64, len), flags)
                .map_err(Into::into)
        }
        Op::RemoveXattr { p, name } => {
            rustix::fs::removexattr(j(p), XATTRS[name]).map_err(Into::into)
        }
    };
    r.map_err(errno)
}

// ---- The tree --------------------------------------------------------------

fn lock(t: &Mutex<Tree>) -> MutexGuard<'_, Tree> {
    t.lock().unwrap()
}

fn caller() -> Caller {
    Caller {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}

/// Look `name` up in `dir` as a FUSE request would (taking a lookup reference,
/// given back at once): its inode and kind, or `None` if there is no such name.
fn child(t: &mut Tree, dir: Ino, name: &[u8]) -> Result<Option<(Ino, Kind)>, i32> {
    match t.lookup(dir, name) {
        Ok(st) => {
            t.forget(st.ino, 1);
            Ok(Some((st.ino, st.kind)))
        }
        Err(FsError::NotFound) => Ok(None),
        Err(e) => Err(e.errno()),
    }
}

/// The kernel's path walk to the last component: the parent directory's inode
/// and the last name. A symlink on the way would be followed and dangles.
fn walk_parent<'p>(t: &mut Tree, path: &'p str) -> Result<(Ino, &'p [u8]), i32> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop().unwrap_or_default();
    let mut dir = ROOT;
    for part in parts {
        match child(t, dir, part.as_bytes())? {
            Some((ino, Kind::Dir)) => dir = ino,
            None | Some((_, Kind::Symlink)) => return Err(libc::ENOENT),
            Some(_) => return Err(libc::ENOTDIR),
        }
    }
    Ok((dir, last.as_bytes()))
}

/// The inode `path` names, following a final symlink (which dangles).
fn walk_follow(t: &mut Tree, path: &str) -> Result<Ino, i32> {
    let (dir, name) = walk_parent(t, path)?;
    match child(t, dir, name)? {
        None | Some((_, Kind::Symlink)) => Err(libc::ENOENT),
        Some((ino, _)) => Ok(ino),
    }
}

fn is_below(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Apply `op` to the tree as the kernel and the FUSE adapter would.
fn apply_tree(m: &Mutex<Tree>, op: &Op) -> Result<(), i32> {
    let e = |e: FsError| e.errno();
    let make = |p: usize, new: NewNode| {
        let mut t = lock(m);
        let (dir, name) = walk_parent(&mut t, PATHS[p])?;
        let st = t.make_node(dir, name, new, caller()).map_err(e)?;
        t.forget(st.ino, 1);
        Ok(())
    };
    match *op {
        Op::Mkdir { p, mode } => make(p, NewNode::new(Kind::Dir, mode)),
        Op::Create { p, mode } => make(p, NewNode::new(Kind::File, mode)),
        Op::Symlink { p, target: tg } => make(
            p,
            NewNode {
                target: Some(target(tg).into_bytes()),
                ..NewNode::new(Kind::Symlink, 0o777)
            },
        ),
        Op::Write { p, off, len, seed } => {
            let ino = walk_follow(&mut lock(m), PATHS[p])?;
            let opened = content::open(m, ino, OpenMode::Write).map_err(e)?;
            let written = opened.file.write_all_at(&noise(seed, len), off);
            let mut t = lock(m);
            let noted = t.wrote(ino, off + len as u64);
            t.release(ino).map_err(e)?;
            written.map_err(errno)?;
            noted.map_err(e)
        }
        Op::Truncate { p, len } => {
            let ino = walk_follow(&mut lock(m), PATHS[p])?;
            if lock(m).stat(ino).map_err(e)?.kind == Kind::File {
                let how = if len == 0 {
                    CopyUp::Empty
                } else {
                    CopyUp::Content
                };
                content::make_private(m, ino, how).map_err(e)?;
            }
            let s = SetAttr {
                size: Some(len),
                ..SetAttr::default()
            };
            lock(m).setattr(ino, s).map(drop).map_err(e)
        }
        Op::Unlink { p } => {
            let mut t = lock(m);
            let (dir, name) = walk_parent(&mut t, PATHS[p])?;
            t.unlink(dir, name).map_err(e)
        }
        Op::Rmdir { p } => {
            let mut t = lock(m);
            let (dir, name) = walk_parent(&mut t, PATHS[p])?;
            t.rmdir(dir, name).map_err(e)
        }
        Op::Rename { a, b, mode } => rename(&mut lock(m), PATHS[a], PATHS[b], mode),
        Op::Link { a, b } => {
            let mut t = lock(m);
            let (adir, aname) = walk_parent(&mut t, PATHS[a])?;
            let (ino, _) = child(&mut t, adir, aname)?.ok_or(libc::ENOENT)?;
            let (bdir, bname) = walk_parent(&mut t, PATHS[b])?;
            if child(&mut t, bdir, bname)?.is_some() {
                return Err(libc::EEXIST);
            }
            let st = t.link(ino, bdir, bname).map_err(e)?;
            t.forget(st.ino, 1);
            Ok(())
        }
        Op::Chmod { p, mode } => {
            let mut t = lock(m);
            let ino = walk_follow(&mut t, PATHS[p])?;
            let s = SetAttr {
                mode: Some(mode),
                ..SetAttr::default()
            };
            t.setattr(ino, s).map(drop).map_err(e)
        }
        Op::SetXattr { p, name, len, mode } => {
            let mut t = lock(m);
            let ino = walk_follow(&mut t, PATHS[p])?;
            t.setxattr(ino, XATTRS[name].as_bytes(), &noise(len as u64, len), mode)
                .map_err(e)
        }
        Op::RemoveXattr { p, name } => {
            let mut t = lock(m);
            let ino = walk_follow(&mut t, PATHS[p])?;
            t.removexattr(ino, XATTRS[name].as_bytes()).map_err(e)
        }
    }
}

/// renameat2 as the VFS runs it before the file system sees it: both names
/// looked up, the existence rules of NOREPLACE and EXCHANGE, then the ancestor
/// rules (`lock_rename`'s trap).
fn rename(t: &mut Tree, a: &str, b: &str, mode: RenameMode) -> Result<(), i32> {
    let (adir, aname) = walk_parent(t, a)?;
    let (bdir, bname) = walk_parent(t, b)?;
    child(t, adir, aname)?.ok_or(libc::ENOENT)?;
    let dst = child(t, bdir, bname)?;
    match (mode, dst) {
        (RenameMode::NoReplace, Some(_)) => return Err(libc::EEXIST),
        (RenameMode::Exchange, None) => return Err(libc::ENOENT),
        _ => {}
    }
    if is_below(b, a) {
        return Err(libc::EINVAL);
    }
    if is_below(a, b) {
        return Err(match mode {
            RenameMode::Exchange => libc::EINVAL,
            _ => libc::ENOTEMPTY,
        });
    }
    t.rename(adir, aname, bdir, bname, mode)
        .map_err(|e| e.errno())
}

// ---- Views -------------------------------------------------------------------

/// What a user sees of one path (times left out: they differ by nature).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Bytes of a file or a symlink's target; 0 for directories.
    size: u64,
    nlink: u32,
    content: Option<Vec<u8>>,
    target: Option<Vec<u8>>,
    /// User xattrs only: others (security.*) belong to the host.
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// First path (in path order) of the same inode, for non-directories.
    leader: Option<String>,
}

type View = BTreeMap<String, Seen>;

fn user_only(x: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    x.into_iter()
        .filter(|(k, _)| k.starts_with(b"user."))
        .collect()
}

/// Fill in hardlink leaders from (path, inode) pairs in path order.
fn set_leaders(view: &mut View, inos: &BTreeMap<String, u64>) {
    let mut first: BTreeMap<u64, String> = BTreeMap::new();
    for (path, ino) in inos {
        let leader = first.entry(*ino).or_insert_with(|| path.clone()).clone();
        if let Some(s) = view.get_mut(path)
            && s.kind != Kind::Dir
        {
            s.leader = Some(leader);
        }
    }
}

fn view_plain(root: &Path) -> View {
    let mut view = View::new();
    let mut inos = BTreeMap::new();
    view.insert(String::new(), seen_plain(root));
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = root.join(&path);
            let seen = seen_plain(&full);
            if seen.kind == Kind::Dir {
                stack.push(path.clone());
            }
            inos.insert(path.clone(), fs::symlink_metadata(&full).unwrap().ino());
            view.insert(path, seen);
        }
    }
    set_leaders(&mut view, &inos);
    view
}

fn seen_plain(full: &Path) -> Seen {
    let md = fs::symlink_metadata(full).unwrap();
    let kind = Kind::of_file_type(&md.file_type());
    let target = (kind == Kind::Symlink).then(|| {
        use std::os::unix::ffi::OsStrExt;
        fs::read_link(full).unwrap().as_os_str().as_bytes().to_vec()
    });
    Seen {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == Kind::Dir { 0 } else { md.len() },
        nlink: md.nlink() as u32,
        content: (kind == Kind::File).then(|| fs::read(full).unwrap()),
        target,
        xattrs: user_only(fsutil::read_xattrs(full).unwrap()),
        leader: None,
    }
}

/// Read a file of the tree through an open handle, as a reader of the mount would.
fn read_tree_file(m: &Mutex<Tree>, ino: Ino, size: u64) -> Vec<u8> {
    let opened = content::open(m, ino, OpenMode::Read).unwrap();
    let mut buf = vec![0u8; size as usize];
    opened.file.read_exact_at(&mut buf, 0).unwrap();
    lock(m).release(ino).unwrap();
    buf
}

fn view_tree(m: &Mutex<Tree>) -> View {
    let mut view = View::new();
    let mut inos = BTreeMap::new();
    view.insert(String::new(), seen_tree(m, ROOT));
    let mut stack = vec![(String::new(), ROOT)];
    while let Some((rel, dir)) = stack.pop() {
        let entries = lock(m).readdir(dir).unwrap();
        for e in entries.into_iter().skip(2) {
            let name = String::from_utf8(e.name).unwrap();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let seen = seen_tree(m, e.ino);
            assert_eq!(seen.kind, e.kind, "{path}: readdir and stat disagree");
            if seen.kind == Kind::Dir {
                stack.push((path.clone(), e.ino));
            }
            inos.insert(path.clone(), e.ino);
            view.insert(path, seen);
        }
    }
    set_leaders(&mut view, &inos);
    view
}

fn seen_tree(m: &Mutex<Tree>, ino: Ino) -> Seen {
    let st = lock(m).stat(ino).unwrap();
    let content = (st.kind == Kind::File).then(|| read_tree_file(m, ino, st.size));
    let t = lock(m);
    let target = (st.kind == Kind::Symlink).then(|| t.readlink(ino).unwrap());
    let mut xattrs = Vec::new();
    for k in t.listxattr(ino).unwrap().split(|&b| b == 0) {
        if !k.is_empty() {
            xattrs.push((k.to_vec(), t.getxattr(ino, k).unwrap()));
        }
    }
    Seen {
        kind: st.kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: if st.kind == Kind::Dir { 0 } else { st.size },
        nlink: st.nlink,
        content,
        target,
        xattrs: user_only(xattrs),
        leader: None,
    }
}

/// The first difference between two views, readable in a failure message.
fn diff(tree: &View, plain: &View) -> Option<String> {
    for (k, p) in plain {
        match tree.get(k) {
            None => return Some(format!("{k}: missing from the tree")),
            Some(t) if t != p => {
                let short = |s: &Seen| Seen {
                    content: s
                        .content
                        .as_ref()
                        .map(|c| blake3::hash(c).as_bytes()[..4].to_vec()),
                    ..s.clone()
                };
                return Some(format!("{k}: tree {:?}\n   plain {:?}", short(t), short(p)));
            }
            Some(_) => {}
        }
    }
    tree.keys()
        .find(|k| !plain.contains_key(*k))
        .map(|k| format!("{k}: only in the tree"))
}

// ---- The test ------------------------------------------------------------------

struct Base {
    store: Store,
    label: String,
    manifest: Manifest,
    checker: Arc<ObjectChecker>,
}

impl Base {
    fn load(&self, private: &Path) -> Mutex<Tree> {
        let t = Tree::load(
            &self.store,
            &self.label,
            self.manifest.clone(),
            private.to_path_buf(),
            self.checker.clone(),
        )
        .unwrap();
        Mutex::new(t)
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

#[test]
fn tree_behaves_like_a_plain_directory_and_replays() {
    // On tmpfs where there is one: the tree fsyncs its journal and copies, and
    // on a shared disk those syncs, not the tree, would set the pace.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let src = dir.path().join("src");
    template(&src);
    let store = Store::init(&dir.path().join("store")).unwrap();
    let rec = ingest_dir(&store, &src, "m", &NoProgress).unwrap().record;
    let manifest = Catalog::open(&store)
        .unwrap()
        .manifest(&rec.name, rec.version)
        .unwrap();
    let objects_before = objects_state(store.root());
    let base = Base {
        checker: Arc::new(ObjectChecker::new(&store)),
        label: format!("{}@{}", rec.name, rec.version),
        store,
        manifest,
    };
    let case = std::cell::Cell::new(0u32);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let ops = (proptest::collection::vec(op(), 1..40), any::<bool>());
    runner
        .run(&ops, |(ops, compact)| {
            let n = case.get();
            case.set(n + 1);
            let private = dir.path().join(format!("private{n}"));
            let plain = dir.path().join(format!("plain{n}"));
            fs::create_dir(&private).unwrap();
            template(&plain);
            let tree = base.load(&private);
            for (i, op) in ops.iter().enumerate() {
                let want = apply_plain(&plain, op);
                let got = apply_tree(&tree, op);
                prop_assert_eq!(got, want, "op {} {:?}", i, op);
            }
            let want = view_plain(&plain);
            if let Some(d) = diff(&view_tree(&tree), &want) {
                return Err(TestCaseError::fail(format!("after the ops: {d}")));
            }
            let mut tree = tree.into_inner().unwrap();
            if compact {
                tree.compact().unwrap();
            }
            drop(tree);
            // The first load replays the journal (unless compacted), the second
            // reads the snapshot that load wrote.
            for round in ["first load", "second load"] {
                let tree = base.load(&private);
                if let Some(d) = diff(&view_tree(&tree), &want) {
                    let how = if compact { "compacted" } else { "killed" };
                    return Err(TestCaseError::fail(format!("{round} ({how}): {d}")));
                }
            }
            fs::remove_dir_all(&private).unwrap();
            fs::remove_dir_all(&plain).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(objects_state(base.store.root()), objects_before);
}
