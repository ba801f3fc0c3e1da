//! Invariant 4 and 1 through the mount: nothing a container does changes another
//! container, the template, or a shared object.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::Command;

use crate::common::*;

fn no_operation_reaches_shared_objects_or_other_containers(b: Backend) {
    if !require_root("FUSE mounts of the fixture: device nodes, other owners") {
        return;
    }
    let (t, store, src) = fixture_store();
    let objects_before = objects_state(&store);
    vz_ok(
        &store,
        &["create", "c1", "--template", "fx", "--backend", b.name()],
    );
    vz_ok(
        &store,
        &["create", "c2", "--template", "fx", "--backend", b.name()],
    );
    let m1 = Mounted::new(&store, "c1");
    let m2 = Mounted::new(&store, "c2");
    let a = &m1.path;

    // write into a template file
    OpenOptions::new()
        .write(true)
        .open(a.join("usr/bin/su"))
        .unwrap()
        .write_all_at(b"XX", 10)
        .unwrap();
    // truncate one
    OpenOptions::new()
        .write(true)
        .open(a.join("usr/bin/wall"))
        .unwrap()
        .set_len(5)
        .unwrap();
    // chmod and chown
    fs::set_permissions(a.join("usr/bin/ping"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(a.join("etc/hostname"), Some(7), Some(8)).unwrap();
    // setxattr
    rustix::fs::setxattr(
        a.join("usr/bin/big"),
        "user.x",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // hardlink to a template file, then write through the new name
    fs::hard_link(a.join("usr/bin/perl"), a.join("root/perl-link")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(a.join("root/perl-link"))
        .unwrap()
        .write_all_at(b"YY", 100)
        .unwrap();
    // rename over a template file
    fs::write(a.join("root/tmpf"), b"replacement").unwrap();
    fs::rename(a.join("root/tmpf"), a.join("usr/bin/big-copy")).unwrap();
    // mmap write into a template file
    let py = format!(
        "import mmap\nf=open('{}','r+b')\nm=mmap.mmap(f.fileno(),0)\nm[0:4]=b'MMAP'\nm.flush()\nm.close()\nf.close()",
        a.join("etc/perl-link").display()
    );
    let st = Command::new("python3").arg("-c").arg(&py).status().unwrap();
    assert!(st.success(), "mmap write failed");
    // truncate through O_TRUNC
    fs::write(a.join("usr/bin/big"), b"short").unwrap();

    // The writing container sees its changes...
    let su = fs::read(a.join("usr/bin/su")).unwrap();
    assert_eq!(&su[10..12], b"XX");
    assert_eq!(fs::read(a.join("usr/bin/wall")).unwrap().len(), 5);
    assert_eq!(
        &fs::read(a.join("usr/bin/perl")).unwrap()[100..102],
        b"YY",
        "hardlink shares content"
    );
    assert_eq!(
        &fs::read(a.join("usr/bin/perl5.36")).unwrap()[..4],
        b"MMAP",
        "mmap write visible via the group"
    );
    assert_eq!(
        fs::read(a.join("usr/bin/big-copy")).unwrap(),
        b"replacement"
    );
    // ...the other container and the template see none of them...
    assert_same_tree(&src, &m2.path);
    let e = t.path().join("export");
    vz_ok(&store, &["export", "fx", e.to_str().unwrap()]);
    assert_same_tree(&src, &e);
    // ...and no object changed in content, mode or link count.
    assert_eq!(objects_state(&store), objects_before);
    m1.umount();
    m2.umount();
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}
both_backends!(no_operation_reaches_shared_objects_or_other_containers);

fn unlinked_open_file_and_directory_rename_behave_like_ext4(b: Backend) {
    if !require_root("FUSE mounts of the fixture: device nodes, other owners") {
        return;
    }
    let (_t, store, _src) = fixture_store();
    vz_ok(
        &store,
        &["create", "c1", "--template", "fx", "--backend", b.name()],
    );
    let m = Mounted::new(&store, "c1");
    let p = &m.path;
    // A file unlinked while open stays readable and writable through its handle.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p.join("usr/bin/ping"))
        .unwrap();
    fs::remove_file(p.join("usr/bin/ping")).unwrap();
    f.write_all_at(b"still here", 0).unwrap();
    let mut buf = [0u8; 10];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"still here");
    drop(f);
    assert!(!p.join("usr/bin/ping").exists());
    // Renaming a directory of template files moves the whole subtree.
    fs::rename(p.join("usr"), p.join("usr-moved")).unwrap();
    assert!(p.join("usr-moved/bin/su").exists());
    assert!(!p.join("usr").exists());
    // A directory cannot move into itself; RENAME_NOREPLACE refuses to replace.
    let err = fs::rename(p.join("usr-moved"), p.join("usr-moved/bin/inside")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let r = rustix::fs::renameat_with(
        rustix::fs::CWD,
        p.join("etc/hostname"),
        rustix::fs::CWD,
        p.join("etc/empty"),
        rustix::fs::RenameFlags::NOREPLACE,
    );
    assert_eq!(r, Err(rustix::io::Errno::EXIST));
    // RENAME_EXCHANGE swaps.
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        p.join("etc/hostname"),
        rustix::fs::CWD,
        p.join("etc/empty"),
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(p.join("etc/empty")).unwrap(), b"fixture\n");
    assert_eq!(fs::read(p.join("etc/hostname")).unwrap(), b"");
    // SEEK_DATA / SEEK_HOLE on the sparse template file.
    let f = fs::File::open(p.join("var-sparse.img")).unwrap();
    let segs = vzstore::store::fsutil::data_segments(&f, 1 << 30).unwrap();
    assert!(segs.len() >= 3 && segs[0].0 == 0, "{segs:?}");
    assert!(segs.iter().map(|s| s.1).sum::<u64>() < 1 << 20, "{segs:?}");
    drop(f);
    m.umount();
}
both_backends!(unlinked_open_file_and_directory_rename_behave_like_ext4);
