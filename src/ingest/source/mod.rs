//! Ingest sources: where a template's tree comes from. One trait, one file per
//! kind of source: [`dir`] (a directory on a local file system, with a stat
//! cache that skips unchanged files), [`tar`] (a tar stream, compressed or
//! not) and [`oci`] (OCI image layouts and archives, docker archives). The
//! archive sources build their tree in [`members`] and hand each file's bytes
//! to the sink as they read them, with no temporary tree.

pub mod dir;
pub mod members;
pub mod oci;
pub mod tar;

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::ingest::sink::ObjectSink;
use crate::store::Store;
use crate::store::catalog::StatEntry;
use crate::store::error::{Error, IoContext, Result};
use crate::store::manifest::Entry;

/// The source an ingest argument names: `-` (a tar stream on standard
/// input), `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:TAG]`,
/// else a path: a directory, or a file holding a tar archive. `consume`
/// (directories only) moves new files into the store instead of copying.
pub fn open(store: &Store, spec: &str, consume: bool) -> Result<Box<dyn Source>> {
    let archive_consume = || Error::BadSource {
        path: spec.into(),
        reason: "--consume takes a directory source only".into(),
    };
    if spec == "-" {
        if consume {
            return Err(archive_consume());
        }
        return Ok(Box::new(tar::TarSource::new(tar::TarInput::Stdin)));
    }
    if let Some(image) = oci::ImageRef::parse(spec) {
        if consume {
            return Err(archive_consume());
        }
        return Ok(Box::new(oci::OciSource::new(image)));
    }
    let path = Path::new(spec);
    let meta = std::fs::metadata(path).at(path)?;
    if meta.is_dir() {
        check_outside_store(store, path, consume)?;
        let mut d = dir::DirSource::open(store, path)?;
        d.consume = consume;
        Ok(Box::new(d))
    } else if consume {
        Err(archive_consume())
    } else if meta.is_file() || meta.file_type().is_fifo() || meta.file_type().is_char_device() {
        Ok(Box::new(tar::TarSource::new(tar::TarInput::File(
            path.to_path_buf(),
        ))))
    } else {
        Err(Error::BadSource {
            path: path.to_path_buf(),
            reason: "neither a directory nor a tar archive file".into(),
        })
    }
}

/// A directory source must not be inside the store (its files change under
/// the ingest, and `--consume` would move the store's own files); with
/// `--consume` it must not hold the store either.
fn check_outside_store(store: &Store, src: &Path, consume: bool) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).at(p);
    let (src_c, store_c) = (canon(src)?, canon(store.root())?);
    let reason = if src_c.starts_with(&store_c) {
        "is inside the store; a template cannot be ingested from the store itself"
    } else if consume && store_c.starts_with(&src_c) {
        "holds the store; --consume would move the store's own files"
    } else {
        return Ok(());
    };
    Err(Error::BadSource {
        path: src.to_path_buf(),
        reason: reason.into(),
    })
}

/// A stat-cache entry to record, keyed by `(dev, ino)`.
pub type StatUpdate = ((u64, u64), StatEntry);

/// What a source produced.
#[derive(Debug, Default)]
pub struct SourceTree {
    /// Every entry of the tree, in any order; the root directory has the empty
    /// path. Regular files carry the hash the sink returned; members of a
    /// hardlink group other than its leader (first in path order) may leave it
    /// `None`, the pipeline fills it in.
    pub entries: Vec<Entry>,
    /// Stat-cache entries to commit with the template (directory sources).
    pub stat_updates: Vec<StatUpdate>,
    /// Things skipped or changed on the way, for the operator.
    pub warnings: Vec<String>,
    /// An image's runtime configuration (OCI sources), kept with the template.
    pub image_config: Option<ImageConfig>,
}

pub use crate::store::records::ImageConfig;

/// A tree to ingest.
///
/// Contract: `read` hands every regular file's content to `sink` (or proves the
/// sink already holds it with [`ObjectSink::known`]) and returns the entries.
/// It reports bad input (unreadable file, a file changing while read, a member
/// escaping the tree) as an error naming the input, and then the ingest commits
/// nothing. It may use threads; the sink is `Sync`.
pub trait Source {
    /// What is ingested, for messages and the template record (e.g. a path).
    fn describe(&self) -> String;
    /// Produce the tree (see the trait documentation).
    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree>;
}
