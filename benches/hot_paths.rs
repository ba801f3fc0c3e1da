//! Criterion benchmarks of the hot paths (issue 8): manifest encode and decode,
//! journal replay, building a container's inode table, operations on the live
//! tree, and an ingest of a small tree. None needs root or FUSE.
//!
//! The machines are noisy, so every group carries a baseline measured in the
//! same run and BENCHMARKS.md reports ratios against it: a plain zstd pass over
//! the same bytes for the manifest, reading the journal file for replay,
//! cloning the manifest for the table, the same system call on the host file
//! system for tree operations, and a copy plus `syncfs` for ingest.
//!
//! Run: `cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 3`
//! (about two minutes on 2 cores).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hint::black_box;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use vzstore::container::inode::{
    Caller, Content, Ino, InodeAttrs, NewNode, ROOT, RenameMode, Time,
};
use vzstore::container::journal::{Journal, Record};
use vzstore::container::tree::Tree;
use vzstore::ingest::{NoProgress, ingest_dir};
use vzstore::store::fsutil;
use vzstore::store::integrity::ObjectChecker;
use vzstore::store::manifest::{Entry, Kind, Manifest};
use vzstore::store::{Hash, Store};

/// Records written for the replay benchmark: about what a busy day of a
/// container appends between two compactions.
const JOURNAL_RECORDS: usize = 100_000;

/// A manifest of the host's `/usr` (about 135,000 entries on the project's
/// machines), with fake content hashes: one per inode, so hardlinks share one.
/// Unreadable directories (when not root) are left out.
fn scan_usr() -> Manifest {
    let root = Path::new("/usr");
    let mut entries = Vec::new();
    let mut groups: HashMap<(u64, u64), u32> = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    while let Some((path, rel)) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = Kind::of_file_type(&m.file_type());
        let link_group = if kind != Kind::Dir && m.nlink() > 1 {
            let next = groups.len() as u32 + 1;
            *groups.entry((m.dev(), m.ino())).or_insert(next)
        } else {
            0
        };
        let target = match kind {
            Kind::Symlink => fs::read_link(&path)
                .map(|t| t.as_os_str().as_bytes().to_vec())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        entries.push(Entry {
            path: rel.clone(),
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            size: match kind {
                Kind::File => m.len(),
                Kind::Symlink => target.len() as u64,
                _ => 0,
            },
            hash: (kind == Kind::File)
                .then(|| Hash::of(&[m.dev().to_le_bytes(), m.ino().to_le_bytes()].concat())),
            target,
            rdev: 0,
            xattrs: fsutil::read_xattrs(&path).unwrap_or_default(),
            link_group,
        });
        if kind == Kind::Dir
            && let Ok(rd) = fs::read_dir(&path)
        {
            for e in rd.flatten() {
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                stack.push((e.path(), r));
            }
        }
    }
    let mut m = Manifest { entries };
    m.sort();
    m
}

fn manifest(c: &mut Criterion, m: &Manifest) {
    let encoded = m.encode();
    let raw = postcard::to_stdvec(m).expect("postcard encoding");
    let body = &encoded[4..];
    eprintln!(
        "manifest of /usr: {} entries, postcard {} bytes, encoded {} bytes",
        m.entries.len(),
        raw.len(),
        encoded.len()
    );
    let mut g = c.benchmark_group("manifest");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(m.entries.len() as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(m.encode())));
    g.bench_function("baseline_zstd_compress", |b| {
        b.iter(|| black_box(zstd::bulk::compress(&raw, 3).expect("zstd")))
    });
    g.bench_function("decode", |b| {
        b.iter_with_large_drop(|| Manifest::decode(black_box(&encoded)).expect("decode"))
    });
    g.bench_function("baseline_zstd_decompress", |b| {
        b.iter_with_large_drop(|| zstd::stream::decode_all(black_box(body)).expect("zstd"))
    });
    g.finish();
}

/// Attributes of a plausible regular file.
fn file_attrs(i: u64) -> InodeAttrs {
    let t = Time {
        sec: 1_700_000_000 + i as i64,
        nsec: 123,
    };
    InodeAttrs {
        kind: Kind::File,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        size: i * 17,
        nlink: 1,
        rdev: 0,
        atime: t,
        mtime: t,
        ctime: t,
        xattrs: BTreeMap::new(),
        content: if i.is_multiple_of(2) {
            Content::Private
        } else {
            Content::Shared(Hash::of(&i.to_le_bytes()))
        },
        parent: ROOT,
    }
}

fn journal(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut j, _) = Journal::open(dir.path()).expect("journal");
        // The mix a file creation writes: next inode, inode, entry, parent.
        let mut batch = Vec::new();
        for i in 0..JOURNAL_RECORDS as u64 / 4 {
            let ino = 1_000 + i;
            batch.push(Record::NextIno(ino + 1));
            batch.push(Record::Inode(ino, file_attrs(i)));
            batch.push(Record::Add(ROOT, format!("file-{i}").into_bytes(), ino));
            batch.push(Record::Remove(ROOT, format!("old-{i}").into_bytes()));
            if batch.len() >= 256 {
                j.append(&batch).expect("append");
                batch.clear();
            }
        }
        j.append(&batch).expect("append");
    }
    let path = dir.path().join("journal");
    let bytes = fs::metadata(&path).expect("journal").len();
    eprintln!("journal: {JOURNAL_RECORDS} records, {bytes} bytes");
    let mut g = c.benchmark_group("journal");
    g.sample_size(20).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(JOURNAL_RECORDS as u64));
    g.bench_function("replay_open", |b| {
        b.iter_with_large_drop(|| {
            let (j, recs) = Journal::open(dir.path()).expect("open");
            assert_eq!(recs.len(), JOURNAL_RECORDS);
            (j, recs)
        })
    });
    g.bench_function("baseline_read_file", |b| {
        b.iter_with_large_drop(|| fs::read(&path).expect("read"))
    });
    g.finish();
}

/// A store in a temporary directory and a container tree loaded from `m` in it.
struct Loaded {
    _dir: tempfile::TempDir,
    store: Store,
    private: PathBuf,
    checker: Arc<ObjectChecker>,
}

impl Loaded {
    fn new() -> Loaded {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(&dir.path().join("store")).expect("store");
        let private = dir.path().join("private");
        fs::create_dir(&private).expect("private dir");
        let checker = Arc::new(ObjectChecker::new(&store));
        Loaded {
            _dir: dir,
            store,
            private,
            checker,
        }
    }

    fn load(&self, m: Manifest) -> Tree {
        Tree::load(
            &self.store,
            "bench@1",
            m,
            self.private.clone(),
            self.checker.clone(),
        )
        .expect("load")
    }
}

fn table(c: &mut Criterion, m: &Manifest) {
    let l = Loaded::new();
    let mut g = c.benchmark_group("table");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(m.entries.len() as u64));
    g.bench_function("tree_load", |b| {
        b.iter_batched(|| m.clone(), |m| l.load(m), BatchSize::LargeInput)
    });
    g.bench_function("baseline_manifest_clone", |b| {
        b.iter_batched(|| (), |()| m.clone(), BatchSize::LargeInput)
    });
    g.finish();
}

/// The directory of the tree and of the host with the most entries among
/// `bin`, `lib` and `share` (one of them is large on any Debian).
fn big_dir(t: &mut Tree) -> (&'static str, Ino) {
    let mut best = None;
    for name in ["bin", "lib", "share"] {
        if let Ok(st) = t.lookup(ROOT, name.as_bytes()) {
            t.forget(st.ino, 1);
            let n = t.readdir(st.ino).map_or(0, |e| e.len());
            if best.is_none_or(|(_, _, k)| n > k) {
                best = Some((name, st.ino, n));
            }
        }
    }
    let (name, ino, _) = best.expect("/usr has bin, lib or share");
    (name, ino)
}

fn tree_ops(c: &mut Criterion, m: &Manifest) {
    let l = Loaded::new();
    let mut t = l.load(m.clone());
    let (dir_name, dir) = big_dir(&mut t);
    let listing = t.readdir(dir).expect("readdir");
    let victim = listing
        .iter()
        .find(|e| e.kind == Kind::File)
        .map(|e| e.name.clone())
        .expect("a regular file in the big directory");
    let host_dir = Path::new("/usr").join(dir_name);
    let host_victim = host_dir.join(std::ffi::OsStr::from_bytes(&victim));
    eprintln!(
        "tree ops in /usr/{dir_name}: {} entries, file {}",
        listing.len() - 2,
        String::from_utf8_lossy(&victim)
    );
    let caller = Caller {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    let (sa, sb) = (scratch.path().join("a"), scratch.path().join("b"));
    fs::write(&sa, b"x").expect("scratch file");

    let mut g = c.benchmark_group("tree_ops");
    g.bench_function("lookup_forget", |b| {
        b.iter(|| {
            let st = t.lookup(dir, black_box(&victim)).expect("lookup");
            t.forget(st.ino, 1);
        })
    });
    g.bench_function("baseline_host_lstat", |b| {
        b.iter(|| fs::symlink_metadata(black_box(&host_victim)).expect("lstat"))
    });
    g.bench_function("readdir", |b| {
        b.iter_with_large_drop(|| t.readdir(black_box(dir)).expect("readdir"))
    });
    g.bench_function("baseline_host_readdir", |b| {
        b.iter_with_large_drop(|| {
            fs::read_dir(black_box(&host_dir))
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name())
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("make_node_unlink", |b| {
        b.iter(|| {
            let st = t
                .make_node(dir, b"bench-new", NewNode::new(Kind::File, 0o644), caller)
                .expect("make_node");
            t.unlink(dir, b"bench-new").expect("unlink");
            t.forget(st.ino, 1);
        })
    });
    g.bench_function("baseline_host_create_unlink", |b| {
        b.iter(|| {
            fs::File::create(&sb).expect("create");
            fs::remove_file(&sb).expect("unlink");
        })
    });
    g.bench_function("rename_there_and_back", |b| {
        b.iter(|| {
            t.rename(dir, &victim, ROOT, b"renamed", RenameMode::Replace)
                .expect("rename");
            t.rename(ROOT, b"renamed", dir, &victim, RenameMode::Replace)
                .expect("rename back");
        })
    });
    g.bench_function("baseline_host_rename_there_and_back", |b| {
        b.iter(|| {
            fs::rename(&sa, &sb).expect("rename");
            fs::rename(&sb, &sa).expect("rename back");
        })
    });
    g.finish();
}

/// A small tree to ingest: 8 directories of 25 files, 1 to 48 KiB each (about
/// 5 MB), distinct content.
fn small_tree(root: &Path) -> u64 {
    let mut total = 0;
    for d in 0..8u64 {
        let dir = root.join(format!("dir-{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..25u64 {
            let len = 1024 * (1 + (d * 25 + f) % 48) as usize;
            let mut data = Vec::with_capacity(len + 32);
            let mut ctr = 0u64;
            while data.len() < len {
                let seed = [d.to_le_bytes(), f.to_le_bytes(), ctr.to_le_bytes()].concat();
                data.extend_from_slice(blake3::hash(&seed).as_bytes());
                ctr += 1;
            }
            data.truncate(len);
            fs::write(dir.join(format!("file-{f}")), &data).expect("write");
            total += len as u64;
        }
    }
    total
}

/// Copy `src` (directories of regular files) to `dst`.
fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir(dst).expect("mkdir");
    for e in fs::read_dir(src).expect("read_dir").flatten() {
        let to = dst.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).expect("copy");
        }
    }
}

fn ingest(c: &mut Criterion) {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let src = src_dir.path().join("src");
    let bytes = small_tree(&src);
    eprintln!("ingest tree: 200 files, {bytes} bytes");
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("ingest_dir_fresh_store", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Store::init(&dir.path().join("store")).expect("store");
                (dir, store)
            },
            |(dir, store)| {
                ingest_dir(&store, &src, "bench", &NoProgress).expect("ingest");
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("baseline_copy_syncfs", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("tempdir"),
            |dir| {
                let dst = dir.path().join("copy");
                copy_tree(&src, &dst);
                let d = fs::File::open(&dst).expect("open");
                rustix::fs::syncfs(&d).expect("syncfs");
                dir
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn hot_paths(c: &mut Criterion) {
    let m = scan_usr();
    manifest(c, &m);
    journal(c);
    table(c, &m);
    tree_ops(c, &m);
    ingest(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hot_paths
}
criterion_main!(benches);
