//! Kernel images: for each template version, an EROFS image of its manifest,
//! which the kernel backend mounts as the lower layer of an overlayfs whose
//! data-only layer is `objects/` (see `src/mount/kernel`).
//!
//! An image lives at `images/<digest>.v<WRITER>.erofs`, `digest` being the
//! manifest's [`digest`](Manifest::digest): versions with equal manifests share
//! one image, and a later writer never mistakes an older writer's image for its
//! own. Images are written atomically (a temporary file in `tmp/`, fsynced,
//! renamed), made at ingest or on first use, removed with the last template
//! version that names them (and by gc if a crash left one behind), and checked
//! by `verify`, which writes the image again in memory and compares: the writer
//! is deterministic.

pub mod build;
mod erofs;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use build::{INLINE_MAX, ImageError};

use crate::store::Store;
use crate::store::catalog::{Catalog, TemplateRecord};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::integrity::ObjectChecker;
use crate::store::manifest::Manifest;
use crate::store::objects;

/// Version of the image layout this writer produces; part of the file name.
pub const WRITER: u32 = 1;

/// `<store>/images`.
pub fn images_dir(store: &Store) -> PathBuf {
    store.root().join("images")
}

/// Where the image of a manifest with this digest lives.
pub fn path_for(store: &Store, digest: &Hash) -> PathBuf {
    images_dir(store).join(format!("{}.v{WRITER}.erofs", digest.to_hex()))
}

/// Whether a missing object may be one a running gc parked (see [`render`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// The caller pins every object of the manifest (an ingest's session): a
    /// missing one is in the trash of a gc between its two passes, and is
    /// back when that gc ends: wait for it.
    BesideGc,
    /// The caller holds the gc lock (verify) or pins nothing: missing is missing.
    No,
}

/// The image bytes of template `label`'s manifest `m`. Small files are read
/// from their objects, which must match their hash and size.
pub fn render(store: &Store, m: &Manifest, label: &str) -> Result<Vec<u8>> {
    render_pinned(store, m, label, Pinned::No)
}

/// [`render`], for a caller whose objects are pinned (see [`Pinned`]).
pub fn render_pinned(store: &Store, m: &Manifest, label: &str, pinned: Pinned) -> Result<Vec<u8>> {
    let mut small = |h: &Hash, size: u64| -> Result<Vec<u8>> {
        let f = match objects::open(store, h) {
            Err(Error::MissingObject(_)) if pinned == Pinned::BesideGc => {
                drop(crate::store::gc::lock(store)?);
                objects::open(store, h)?
            }
            r => r?,
        };
        let mut buf = Vec::with_capacity(size as usize);
        Read::take(f, INLINE_MAX + 1)
            .read_to_end(&mut buf)
            .at(store.object_path(h))?;
        if buf.len() as u64 != size {
            return Err(Error::ObjectSize {
                hash: *h,
                expected: size,
                found: buf.len() as u64,
            });
        }
        if Hash::of(&buf) != *h {
            return Err(Error::CorruptObject(*h));
        }
        Ok(buf)
    };
    let mut inodes = build::inodes(m, label, &mut small)?;
    let digest = m.digest();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest.0[..16]);
    erofs::write(&mut inodes, uuid).map_err(|e| Error::Image {
        template: label.to_string(),
        err: ImageError::Layout(e.to_string()),
    })
}

/// Write rendered image bytes for the manifest with `digest` (atomically).
pub fn write(store: &Store, digest: &Hash, bytes: &[u8]) -> Result<PathBuf> {
    let path = path_for(store, digest);
    write_atomic(store, &path, bytes)?;
    Ok(path)
}

/// The image of template version `t`, opened and checked: its bytes hash to
/// what the template record says (the image is mounted through this handle,
/// so what was checked is what the kernel reads). As for objects
/// (`store::integrity`), a check is remembered by content hash and ctime, so
/// an image is hashed again only after something changed it. A missing or damaged image
/// is written again from the manifest (`load` reads it; a damaged one is
/// logged). For versions recorded before images had hashes, the image is
/// compared with a fresh rendering, and the (digest, image hash) pair is
/// returned for the caller to record with [`Catalog::set_template_image`], so
/// that the next mount is quick.
pub fn open_checked(
    store: &Store,
    t: &TemplateRecord,
    load: &mut dyn FnMut() -> Result<Manifest>,
) -> Result<CheckedImage> {
    let opened = |digest: Hash, written: bool, record| -> Result<CheckedImage> {
        let path = path_for(store, &digest);
        Ok(CheckedImage {
            file: fs::File::open(&path).at(&path)?,
            digest,
            written,
            record,
        })
    };
    if let (Some(digest), Some(want)) = (t.digest, t.image) {
        let path = path_for(store, &digest);
        // Hashed already since it last changed (its ctime): no need again.
        let checker = ObjectChecker::new(store);
        if let Ok(f) = fs::File::open(&path)
            && f.metadata()
                .is_ok_and(|m| checker.still_checked(&f, &want, m.len()))
        {
            return Ok(CheckedImage {
                file: f,
                digest,
                written: false,
                record: None,
            });
        }
        match open_hashed(&path)? {
            Some((f, got)) if got == want => {
                if let Ok(m) = f.metadata() {
                    checker.remember(&want, (m.ctime(), m.ctime_nsec() as u32));
                }
                return Ok(CheckedImage {
                    file: f,
                    digest,
                    written: false,
                    record: None,
                });
            }
            Some(_) => log::warn!(
                "{}: the kernel image of {} is damaged; writing it again",
                path.display(),
                t.label()
            ),
            None => {}
        }
        let bytes = render(store, &load()?, &t.label())?;
        if Hash::of(&bytes) != want {
            log::warn!(
                "{}: the image written now differs from the one recorded at ingest",
                t.label()
            );
        }
        write_atomic(store, &path, &bytes)?;
        return opened(digest, true, None);
    }
    // An older record: render, compare, record.
    let m = load()?;
    let digest = m.digest();
    let path = path_for(store, &digest);
    let bytes = render(store, &m, &t.label())?;
    let want = Hash::of(&bytes);
    let same = matches!(open_hashed(&path)?, Some((_, got)) if got == want);
    if !same {
        write_atomic(store, &path, &bytes)?;
    }
    opened(digest, !same, Some((digest, want)))
}

/// An image opened by [`open_checked`].
pub struct CheckedImage {
    /// The checked file (mount it through this handle).
    pub file: fs::File,
    /// The digest of its manifest (names the image).
    pub digest: Hash,
    /// Whether it was written just now (a mount of the file it replaced
    /// serves the old bytes).
    pub written: bool,
    /// (digest, image hash) for the caller to record in the template record
    /// (templates recorded before images had hashes).
    pub record: Option<(Hash, Hash)>,
}

/// Open a file and hash it; `None` if it does not exist.
fn open_hashed(path: &Path) -> Result<Option<(fs::File, Hash)>> {
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at(path),
    };
    let h = fsutil::hash_read(&f).at(path)?;
    Ok(Some((f, h.into())))
}

fn write_atomic(store: &Store, path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = images_dir(store);
    fsutil::create_private_dir(&dir).at(&dir)?;
    let tmp_dir = store.tmp_dir();
    let mut tmp = tempfile::Builder::new()
        .prefix("image-")
        .tempfile_in(&tmp_dir)
        .at(&tmp_dir)?;
    let r = (|| {
        fsutil::failpoint_io("image-write")?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()
    })();
    r.at(tmp.path())?;
    tmp.persist(path).map_err(|e| e.error).at(path)?;
    fsutil::sync_dir(&dir).at(&dir)
}

/// What `verify` found of one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageState {
    /// Not written yet: it is made on first use.
    Missing,
    /// Byte for byte what the writer makes of the manifest.
    Good,
    /// Anything else.
    Damaged,
}

/// Compare the image of `m` on disk with what the writer makes of it now.
/// A template the writer cannot render reports the error.
pub fn check(store: &Store, t: &TemplateRecord, m: &Manifest) -> Result<(PathBuf, ImageState)> {
    let path = path_for(store, &m.digest());
    let on_disk = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((path, ImageState::Missing));
        }
        Err(e) => return Err(e).at(&path),
    };
    let want = render(store, m, &t.label())?;
    let state = if blake3::hash(&on_disk) == blake3::hash(&want) {
        ImageState::Good
    } else {
        ImageState::Damaged
    };
    Ok((path, state))
}

/// Write the image of `m` again, replacing a damaged one.
pub fn rewrite(store: &Store, t: &TemplateRecord, m: &Manifest) -> Result<PathBuf> {
    let path = path_for(store, &m.digest());
    let bytes = render(store, m, &t.label())?;
    write_atomic(store, &path, &bytes)?;
    Ok(path)
}

/// The image paths that the committed template versions name.
pub fn wanted(store: &Store, db: &Catalog) -> Result<HashSet<PathBuf>> {
    let mut out = HashSet::new();
    for t in db.templates()? {
        let m = db.manifest(&t.name, t.version)?;
        out.insert(path_for(store, &m.digest()));
    }
    Ok(out)
}

/// Remove every image no committed template version names (after `templates
/// rm`, and by gc), except those written since `before` (an ingest running
/// beside may have committed its template after `wanted` was read). Also
/// removes temporary images that a killed writer left in `tmp/` before then.
/// Returns the count and the bytes freed.
pub fn remove_unused(
    store: &Store,
    wanted: &HashSet<PathBuf>,
    before: SystemTime,
) -> Result<(u64, u64)> {
    remove_stale_temps(store, before - Duration::from_secs(600))?;
    let dir = images_dir(store);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e).at(&dir),
    };
    let (mut n, mut bytes) = (0, 0);
    for e in rd {
        let e = e.at(&dir)?;
        let p = e.path();
        if wanted.contains(&p) {
            continue;
        }
        let Ok(md) = e.metadata() else { continue };
        if md.modified().is_ok_and(|t| t >= before) {
            continue;
        }
        let len = md.len();
        match fs::remove_file(&p) {
            Ok(()) => {
                n += 1;
                bytes += len;
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).at(&p),
        }
    }
    if n > 0 {
        fsutil::sync_dir(&dir).at(&dir)?;
    }
    Ok((n, bytes))
}

/// Temporary images (`tmp/image-*`) older than `before`: a writer was killed.
fn remove_stale_temps(store: &Store, before: SystemTime) -> Result<()> {
    let dir = store.tmp_dir();
    let Ok(rd) = fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let stale = e.file_name().as_encoded_bytes().starts_with(b"image-")
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before);
        if stale {
            let p = e.path();
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).at(&p),
            }
        }
    }
    Ok(())
}

/// Bytes the images take on disk.
pub fn stored_bytes(store: &Store) -> Result<u64> {
    let dir = images_dir(store);
    if !dir.exists() {
        return Ok(0);
    }
    objects::du(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{Entry, Kind};

    fn entry(path: &str, kind: Kind, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            uid: 1,
            gid: 2,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 5,
            size,
            hash: (kind == Kind::File).then(|| Hash::of(&vec![b'x'; size as usize])),
            target: if kind == Kind::Symlink {
                b"target".to_vec()
            } else {
                Vec::new()
            },
            rdev: 0,
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            link_group: 0,
        }
    }

    /// The image layout is pinned: a change of these bytes is a new layout and
    /// must come with a new [`WRITER`] (old images are then rebuilt, not
    /// misread). Update the digest only together with `WRITER`.
    #[test]
    fn golden_image_layout() {
        let m = Manifest {
            entries: vec![
                entry("", Kind::Dir, 0),
                entry("big", Kind::File, 100_000),
                entry("d", Kind::Dir, 0),
                entry("d/small", Kind::File, 10),
                entry("link", Kind::Symlink, 6),
            ],
        };
        let mut small = |_: &Hash, size: u64| Ok(vec![b'x'; size as usize]);
        let mut inodes = build::inodes(&m, "t@1", &mut small).unwrap();
        let bytes = erofs::write(&mut inodes, [9; 16]).unwrap();
        assert_eq!(WRITER, 1);
        assert_eq!(
            blake3::hash(&bytes).to_hex().as_str(),
            "7978f823c01d59d4cecf760790030590e13a6cc9963838f7ef3438a947dd684a"
        );
    }
}
