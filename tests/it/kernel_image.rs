//! The kernel backend's image: every layout the writer makes reads back
//! through the kernel, the image is shared by equal trees and leaves with its
//! template, a template's own overlay xattrs stay data, and a damaged image is
//! never mounted, found by verify and rewritten by repair.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use crate::kernel_backend::{create_kernel, images};

/// A tree that exercises every layout choice of the image writer: directories
/// over many blocks, the longest names, a symlink too long to inline, inline
/// tails pushed past a block by large xattrs, files around the inline limit and
/// the block size, a sparse file larger than 4 GiB, devices with large numbers,
/// pre-1970 times, hardlinks across directories, names that are not UTF-8.
fn awkward_tree(root: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let set = |p: &Path, n: &str, v: &[u8]| {
        rustix::fs::lsetxattr(p, n, v, rustix::fs::XattrFlags::empty()).unwrap()
    };
    fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..3000 {
        let name = format!("{i:05}-{}", "n".repeat(90));
        fs::write(root.join("many").join(name), format!("{i}")).unwrap();
    }
    fs::create_dir_all(root.join("empty")).unwrap();
    let long = "L".repeat(255);
    fs::write(root.join(&long), b"longest name").unwrap();
    std::os::unix::fs::symlink("t/".repeat(2000), root.join("long-link")).unwrap();
    std::os::unix::fs::symlink("short", root.join("short-link")).unwrap();
    for size in [0usize, 1, 63, 64, 65, 4095, 4096, 4097, 200_000] {
        fs::write(root.join(format!("size-{size}")), noise(size as u64, size)).unwrap();
    }
    let x = root.join("xattr-heavy");
    fs::write(&x, b"inline bytes after big xattrs").unwrap();
    set(&x, "user.big", &noise(4, 3000));
    set(&x, "user.second", &noise(5, 900));
    set(&x, "security.test", b"label");
    set(&x, "trusted.plain", b"t");
    let d = root.join("xattr-dir");
    fs::create_dir(&d).unwrap();
    set(&d, "user.d", b"dir attr");
    // POSIX ACLs (the xattr form: version 2, then tag, perm, id entries).
    let acl = |entries: &[(u16, u16, u32)]| {
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend(tag.to_le_bytes());
            v.extend(perm.to_le_bytes());
            v.extend(id.to_le_bytes());
        }
        v
    };
    let any = u32::MAX;
    let access = acl(&[
        (1, 6, any),
        (2, 4, 1000),
        (4, 4, any),
        (0x10, 4, any),
        (0x20, 0, any),
    ]);
    set(&x, "system.posix_acl_access", &access);
    set(&d, "system.posix_acl_default", &access);
    let sparse = root.join("sparse-5g");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(5 << 30).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"middle", 3 << 30).unwrap();
    drop(f);
    fs::hard_link(root.join("size-200000"), root.join("many/hardlink")).unwrap();
    fs::hard_link(root.join("size-1"), root.join("xattr-dir/link-1")).unwrap();
    let mk = |name: &str, ft: rustix::fs::FileType, dev: u64| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join(name),
            ft,
            rustix::fs::Mode::from_raw_mode(0o640),
            dev,
        )
        .unwrap()
    };
    mk("fifo", rustix::fs::FileType::Fifo, 0);
    mk(
        "null",
        rustix::fs::FileType::CharacterDevice,
        libc::makedev(1, 3),
    );
    mk(
        "big-dev",
        rustix::fs::FileType::BlockDevice,
        libc::makedev(259, 1 << 19),
    );
    let odd = std::ffi::OsStr::from_bytes(b"not-utf8-\xff\xfe");
    fs::write(root.join(odd), b"odd").unwrap();
    fs::set_permissions(root.join("size-65"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(root.join("xattr-dir"), fs::Permissions::from_mode(0o3777)).unwrap();
    std::os::unix::fs::chown(root.join("size-64"), Some(1234), Some(5678)).unwrap();
    set_mtime(&root.join("size-4096"), -86_400 * 365, 123_456_789);
    set_mtime(&root.join("many"), 4_000_000_000, 999_999_999);
}

#[test]
fn every_layout_of_the_image_writer_reads_back_through_the_kernel() {
    if !require_root("device nodes, owners, trusted xattrs, kernel mounts") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    awkward_tree(&src);
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "odd"]);
    let img = images(&store).remove(0);
    let out = Command::new("fsck.erofs").arg(&img).output().unwrap();
    assert!(
        out.status.success(),
        "fsck.erofs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    create_kernel(&store, "c1", "odd");
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    // The sparse file reads its one written spot from its object.
    let f = fs::File::open(m.path.join("sparse-5g")).unwrap();
    let mut buf = [0u8; 6];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, 3 << 30).unwrap();
    assert_eq!(&buf, b"middle");
    drop(f);
    m.umount();
}

#[test]
fn the_image_is_valid_erofs_shared_by_equal_trees_and_removed_with_its_template() {
    if !require_root("kernel mounts, device nodes and owners in the fixture") {
        return;
    }
    let (_t, store, src) = fixture_store();
    let imgs = images(&store);
    assert_eq!(imgs.len(), 1, "ingest writes the image: {imgs:?}");
    // An independent reader accepts it.
    let out = Command::new("fsck.erofs").arg(&imgs[0]).output().unwrap();
    assert!(
        out.status.success(),
        "fsck.erofs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Metadata only: far smaller than the template's bytes.
    let logical: u64 = snapshot(&src).values().map(|s| s.size).sum();
    let size = fs::metadata(&imgs[0]).unwrap().len();
    assert!(
        size * 10 < logical,
        "image {size} B for {logical} B of files"
    );
    // A second version with the same tree shares the image.
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "fx"]);
    assert_eq!(images(&store), imgs);
    vz_ok(&store, &["templates", "rm", "fx@1"]);
    assert_eq!(images(&store), imgs, "fx@2 still names it");
    // In use by a container: refused, image kept.
    create_kernel(&store, "c1", "fx@2");
    let err = vz_err(&store, &["templates", "rm", "fx@2"]);
    assert!(err.contains("c1"), "{err}");
    assert_eq!(images(&store), imgs);
    vz_ok(&store, &["destroy", "c1"]);
    vz_ok(&store, &["templates", "rm", "fx@2"]);
    assert!(images(&store).is_empty(), "removed with its last version");
    vz_ok(&store, &["gc"]);
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

#[test]
fn a_damaged_image_is_never_mounted_it_is_written_again() {
    if !require_root("kernel mounts of the fixture") {
        return;
    }
    let (_t, store, src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    let img = images(&store).remove(0);
    let good = fs::read(&img).unwrap();
    // Every way of damaging it: a flipped byte (in the inline data of a small
    // file, or in a redirect, which could point at another template's
    // object), a truncation, an empty file, a missing file.
    let hostname_at = good
        .windows(8)
        .position(|w| w == b"fixture\n")
        .expect("etc/hostname's bytes are inline");
    let redirect_at = good.windows(1).position(|w| w == b"/").expect("a redirect");
    type Damage = Box<dyn Fn(&Path)>;
    let damages: Vec<Damage> = vec![
        Box::new(move |p| {
            let mut b = fs::read(p).unwrap();
            b[hostname_at] = b'J';
            fs::write(p, b).unwrap();
        }),
        Box::new(move |p| {
            let mut b = fs::read(p).unwrap();
            b[redirect_at + 1] ^= 1;
            fs::write(p, b).unwrap();
        }),
        Box::new(|p| {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(8192)
                .unwrap()
        }),
        Box::new(|p| fs::write(p, b"").unwrap()),
        Box::new(|p| fs::remove_file(p).unwrap()),
    ];
    for (i, damage) in damages.iter().enumerate() {
        damage(&img);
        let out = vz(&store, &["mount", "c1"]);
        assert!(
            out.status.success(),
            "damage {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let m = Mounted {
            store: store.clone(),
            name: "c1".into(),
            path: store.join("root/c1"),
        };
        assert_same_tree(&src, &m.path);
        m.umount();
        assert_eq!(
            fs::read(&img).unwrap(),
            good,
            "damage {i}: image not rewritten"
        );
    }
}

#[test]
fn a_damaged_image_is_found_by_verify_and_rewritten_by_repair() {
    if !require_root("kernel mounts of the fixture") {
        return;
    }
    let (_t, store, src) = fixture_store();
    create_kernel(&store, "c1", "fx");
    vz_ok(&store, &["create", "f1", "--template", "fx"]);
    let img = images(&store).remove(0);
    let flip = |img: &Path| {
        let mut bytes = fs::read(img).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        fs::write(img, &bytes).unwrap();
    };
    flip(&img);
    let out = vz(&store, &["verify"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGED kernel image") && text.contains("fx@1") && text.contains("c1"),
        "{text}"
    );
    // Only kernel containers use images: f1 (FUSE) is not named.
    assert!(
        text.contains("(containers: c1)"),
        "a FUSE container does not use images: {text}"
    );
    let out = vz(&store, &["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["bad_images"][0]["template"], "fx@1");
    let fixed = vz_ok(&store, &["verify", "--repair"]);
    assert!(fixed.contains("REWRITTEN kernel image"), "{fixed}");
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));

    // Damaged while mounted: the mount reads the old file until remounted;
    // verify says so and is not clean until then.
    let m = Mounted::new(&store, "c1");
    flip(&img);
    let out = vz(&store, &["verify", "--repair"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REWRITTEN") && text.contains("STALE mount: container c1"),
        "{text}"
    );
    m.umount();
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    m.umount();
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));

    // A bad object and a damaged image together: the image is checked once
    // repair has restored the object.
    let obj = objects_state(&store).keys().next().unwrap().clone();
    fs::remove_file(&obj).unwrap();
    flip(&img);
    let text = String::from_utf8_lossy(&vz(&store, &["verify"]).stdout).into_owned();
    assert!(
        text.contains("MISSING object") && text.contains("image of fx@1 was not checked"),
        "{text}"
    );
    let fixed = vz_ok(&store, &["verify", "--repair", src.to_str().unwrap()]);
    assert!(
        fixed.contains("restored object") && fixed.contains("REWRITTEN kernel image"),
        "{fixed}"
    );
    assert!(vz_ok(&store, &["verify"]).contains("-> clean"));
}

#[test]
fn template_overlay_xattrs_are_kept_as_data_and_never_acted_on() {
    if !require_root("trusted xattrs and kernel mounts") {
        return;
    }
    let (t, store) = new_store();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("etc/big"), noise(5, 10_000)).unwrap();
    fs::write(src.join("etc/small"), b"tiny").unwrap();
    // Attributes that would redirect, hide or make a metacopy if overlayfs
    // took them for its own.
    let set = |p: &Path, n: &str, v: &[u8]| {
        rustix::fs::lsetxattr(p, n, v, rustix::fs::XattrFlags::empty()).unwrap()
    };
    set(
        &src.join("etc/big"),
        "trusted.overlay.redirect",
        b"/etc/small",
    );
    set(&src.join("etc/big"), "trusted.overlay.metacopy", b"");
    set(&src.join("d"), "trusted.overlay.opaque", b"y");
    set(&src.join("etc/small"), "user.note", b"kept");
    vz_ok(&store, &["ingest", src.to_str().unwrap(), "--name", "x"]);
    create_kernel(&store, "c1", "x");
    let m = Mounted::new(&store, "c1");
    assert_same_tree(&src, &m.path);
    m.umount();
}
