//! `commit`: a container's current tree becomes a new version of a template.
//! It is an ingest whose source is the container's view: its private files
//! are hashed and become objects (staged through the ingest's session, so gc
//! and crashes are handled as for any ingest); everything else is shared
//! already and only pinned. The manifest, image and record follow the ingest
//! pipeline.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::container::view::View;
use crate::ingest::source::{Source, SourceTree};
use crate::ingest::{self, IngestSummary, ObjectSink, Progress};
use crate::lifecycle::{IsMounted, hold};
use crate::store::Store;
use crate::store::catalog::{Catalog, ImageConfig};
use crate::store::error::{IoContext, Result};
use crate::store::fsutil;
use crate::store::hash::Hash;

/// A held container's view as an ingest source.
struct ViewSource<'a> {
    name: &'a str,
    view: &'a View,
    /// Hashes of the private files, filled while reading.
    hashed: Mutex<HashMap<PathBuf, Hash>>,
    /// The base template's image config, carried to the new template.
    image_config: Option<ImageConfig>,
}

impl Source for ViewSource<'_> {
    fn describe(&self) -> String {
        format!("container {}", self.name)
    }

    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree> {
        let total: u64 = self
            .view
            .private_files()
            .map(|(i, _)| self.view.entries[i].entry.size)
            .sum();
        sink.progress()
            .start(total, self.view.private_files().count() as u64);
        // Each private inode once (hardlinked names share a file).
        let mut seen = HashSet::new();
        let files: Vec<PathBuf> = self
            .view
            .private_files()
            .filter(|(i, _)| seen.insert(self.view.entries[*i].inode))
            .map(|(_, p)| p.to_path_buf())
            .collect();
        let hashed: Vec<(PathBuf, Hash)> = files
            .into_par_iter()
            .map(|p| {
                let f = File::open(&p).at(&p)?;
                let size = f.metadata().at(&p)?.len();
                let segs = fsutil::data_segments(&f, size).at(&p)?;
                let h = Hash::from(fsutil::hash_segments(&f, &segs, size).at(&p)?);
                sink.store_file(&p, &f, &segs, size, h)?;
                sink.progress().advance(size);
                Ok((p, h))
            })
            .collect::<Result<_>>()?;
        let hashed: HashMap<PathBuf, Hash> = hashed.into_iter().collect();
        let mut entries = Vec::with_capacity(self.view.entries.len());
        for v in &self.view.entries {
            let mut e = v.entry.clone();
            match (&v.private, e.hash) {
                (Some(p), _) => e.hash = hashed.get(p).copied(),
                // Shared already: pinned so that gc keeps it until the commit.
                (None, Some(h)) => {
                    sink.known(&h, e.size)?;
                }
                (None, None) => {}
            }
            entries.push(e);
        }
        *self.hashed.lock().unwrap_or_else(|p| p.into_inner()) = hashed;
        Ok(SourceTree {
            entries,
            stat_updates: Vec::new(),
            warnings: Vec::new(),
            image_config: self.image_config.clone(),
        })
    }
}

/// Commit container `ct` as a new version of template `name`. Returns the
/// ingest summary and the hashes of the container's private files (so that a
/// following rebase onto the new version does not read them again).
pub fn commit(
    store: &Store,
    ct: &str,
    name: &str,
    progress: &dyn Progress,
    mounted: IsMounted<'_>,
) -> Result<(IngestSummary, HashMap<PathBuf, Hash>)> {
    let held = hold(store, ct, "commit", mounted)?;
    let db = Catalog::open_read_only(store)?;
    db.require_whole(&held.rec.template, held.rec.version, "commit")?;
    let image_config = db.image_config(&held.rec.template, held.rec.version)?;
    drop(db);
    let mut source = ViewSource {
        name: ct,
        view: &held.view,
        hashed: Mutex::new(HashMap::new()),
        image_config,
    };
    let summary = ingest::ingest(store, &mut source, name, progress)?;
    let hashed = source
        .hashed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok((summary, hashed))
}
