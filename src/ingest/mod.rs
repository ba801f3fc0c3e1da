//! Ingest: turn a source tree into objects plus a manifest, and commit it as a
//! new template version.
//!
//! The pipeline is the same for every source ([`source::Source`]): the source
//! yields entries and hands file contents to an [`ObjectSink`], which hashes
//! them, pins each hash in the ingest's write session and stages the content
//! only when the store lacks it; then the session publishes the new objects
//! durably, and only then is the manifest committed in one catalog batch
//! (objects before manifests, invariant 2). If anything fails before the commit,
//! nothing of the ingest is visible: staged objects die with the session.

pub mod sink;
pub mod source;

use std::path::Path;
use std::time::Instant;

use crate::store::Store;
use crate::store::catalog::{Catalog, TemplateRecord};
use crate::store::error::{Error, Result};
use crate::store::hash::Hash;
use crate::store::image;
use crate::store::manifest::{Kind, Manifest};
use crate::store::name;
use crate::store::session::Session;
pub use sink::{NoProgress, ObjectSink, Progress};
use source::Source;

/// What an ingest did.
#[derive(Clone, Debug)]
pub struct IngestSummary {
    pub record: TemplateRecord,
    /// Entries of every kind.
    pub entries: u64,
    /// Regular files (hardlinked names counted once).
    pub files: u64,
    /// Logical bytes of regular files.
    pub bytes: u64,
    /// Objects this ingest added to the store.
    pub new_objects: u64,
    /// Logical bytes of the new objects.
    pub new_bytes: u64,
    /// Logical bytes whose content was already stored.
    pub dedup_bytes: u64,
    /// Files whose hash came from the stat cache (not re-read).
    pub cache_hits: u64,
    pub seconds: f64,
    /// Things skipped, such as sockets.
    pub warnings: Vec<String>,
}

/// Ingest directory `src` as a new version of template `name`.
pub fn ingest_dir(
    store: &Store,
    src: &Path,
    name: &str,
    progress: &dyn Progress,
) -> Result<IngestSummary> {
    let mut source = source::dir::DirSource::open(store, src)?;
    ingest(store, &mut source, name, progress)
}

/// Ingest `source` as a new version of template `name`.
pub fn ingest(
    store: &Store,
    source: &mut dyn Source,
    name: &str,
    progress: &dyn Progress,
) -> Result<IngestSummary> {
    name::validate(name)?;
    let started = Instant::now();
    let session = Session::begin(store)?;
    let sink = ObjectSink::new(&session, progress);
    let tree = source.read(&sink)?;
    let mut manifest = Manifest {
        entries: tree.entries,
    };
    manifest.sort();
    fill_hardlink_hashes(&mut manifest);
    check_tree(&manifest, &source.describe())?;
    log::info!("hash and stage: {:.3} s", started.elapsed().as_secs_f64());
    // Content no entry kept (a replaced archive member) is not published.
    let used: std::collections::HashSet<Hash> =
        manifest.entries.iter().filter_map(|e| e.hash).collect();
    let (dropped, dropped_bytes) = session.drop_staged(&|h| used.contains(h))?;
    session.publish()?;
    log::info!("publish: {:.3} s", started.elapsed().as_secs_f64());
    // The kernel backend's image: rendered now (its objects are published and
    // still pinned), its hash committed with the template, its file written
    // after. A tree the kernel cannot show stays a good template for FUSE.
    let mut image_warning = None;
    // Pinned by the session: a gc in its window is waited for.
    let image = match image::render_pinned(store, &manifest, name, image::Pinned::BesideGc) {
        Ok(bytes) => Some(bytes),
        Err(e @ Error::Image { .. }) => {
            image_warning = Some(format!(
                "{e}; kernel containers cannot use it, FUSE ones can"
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let record = Catalog::open(store)?.commit_template(
        name,
        &source.describe(),
        &manifest,
        &tree.stat_updates,
        image.as_deref().map(Hash::of),
        tree.image_config.as_ref(),
    )?;
    log::info!("commit: {:.3} s", started.elapsed().as_secs_f64());
    let counts = sink.counts();
    drop(session);
    if let (Some(bytes), Some(digest)) = (&image, &record.digest)
        && let Err(e) = image::write(store, digest, bytes)
    {
        image_warning = Some(format!(
            "template {} has no kernel image yet: {e}; the first kernel container of it writes it",
            record.label()
        ));
    }
    log::info!("image: {:.3} s", started.elapsed().as_secs_f64());
    let leaders = manifest.link_leaders();
    let files = manifest
        .entries
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            e.kind == Kind::File && (e.link_group == 0 || leaders[&e.link_group] == *i)
        })
        .count() as u64;
    Ok(IngestSummary {
        entries: manifest.entries.len() as u64,
        files,
        bytes: manifest.logical_bytes(),
        new_objects: counts.new_objects - dropped,
        new_bytes: counts.new_bytes.saturating_sub(dropped_bytes),
        dedup_bytes: counts.dedup_bytes,
        cache_hits: counts.cache_hits,
        seconds: started.elapsed().as_secs_f64(),
        warnings: tree.warnings.into_iter().chain(image_warning).collect(),
        record,
    })
}

/// Members of a hardlink group take the content hash of their leader.
fn fill_hardlink_hashes(m: &mut Manifest) {
    let leaders = m.link_leaders();
    let hashes: std::collections::HashMap<u32, _> = leaders
        .iter()
        .filter_map(|(&g, &i)| m.entries[i].hash.map(|h| (g, h)))
        .collect();
    for e in &mut m.entries {
        if e.link_group != 0 && e.kind == Kind::File && e.hash.is_none() {
            e.hash = hashes.get(&e.link_group).copied();
        }
    }
}

/// A manifest must be a tree: one root directory, unique paths, every parent a
/// directory, a hash for every regular file. Sources are trusted to produce
/// this; a violation is a bug in a source, reported, never committed.
fn check_tree(m: &Manifest, source: &str) -> Result<()> {
    m.validate().map_err(|reason| Error::BadSource {
        path: source.into(),
        reason,
    })
}
