//! The tree an export writes: a template's manifest, or a held container's
//! view (its private files named by path), with the image config to carry.

use std::fs::File;
use std::path::PathBuf;

use crate::lifecycle::{Held, IsMounted, hold};
use crate::store::Store;
use crate::store::catalog::{Catalog, ImageConfig};
use crate::store::error::{IoContext, Result};
use crate::store::manifest::{Entry, Manifest};
use crate::store::name::TemplateRef;
use crate::store::objects;

/// Entries in path order and where each file's bytes are.
pub struct ExportTree {
    pub label: String,
    pub manifest: Manifest,
    /// For a container: the private file of each entry that has one (by
    /// index); empty for a template.
    pub private: Vec<Option<PathBuf>>,
    pub config: Option<ImageConfig>,
    /// The image tag an OCI export gets unless told: `NAME:VERSION` of a
    /// template, `CT:latest` of a container.
    pub default_tag: String,
    /// Keeps a container held (locked, unmountable) while it is exported.
    _held: Option<Held>,
}

impl ExportTree {
    pub fn template(store: &Store, r: &TemplateRef) -> Result<ExportTree> {
        let db = Catalog::open_read_only(store)?;
        let rec = db.resolve(r)?;
        db.require_whole(&rec.name, rec.version, "export")?;
        Ok(ExportTree {
            label: rec.label(),
            manifest: db.manifest(&rec.name, rec.version)?,
            private: Vec::new(),
            config: db.image_config(&rec.name, rec.version)?,
            default_tag: format!("{}:{}", rec.name, rec.version),
            _held: None,
        })
    }

    /// Container `ct`'s current tree; it stays held until the tree is dropped.
    pub fn container(store: &Store, ct: &str, mounted: IsMounted<'_>) -> Result<ExportTree> {
        let held = hold(store, ct, "export", mounted)?;
        let db = Catalog::open_read_only(store)?;
        db.require_whole(&held.rec.template, held.rec.version, "export")?;
        let config = db.image_config(&held.rec.template, held.rec.version)?;
        drop(db);
        let entries: Vec<Entry> = held.view.entries.iter().map(|v| v.entry.clone()).collect();
        let private = held
            .view
            .entries
            .iter()
            .map(|v| v.private.clone())
            .collect();
        Ok(ExportTree {
            label: format!("container {ct}"),
            manifest: Manifest { entries },
            private,
            config,
            default_tag: format!("{ct}:latest"),
            _held: Some(held),
        })
    }

    /// Open the bytes of entry `i` (a regular file; for a hardlink group,
    /// any of its names).
    pub fn open(&self, store: &Store, i: usize) -> Result<File> {
        if let Some(Some(p)) = self.private.get(i) {
            return File::open(p).at(p);
        }
        let e = &self.manifest.entries[i];
        match e.hash {
            Some(h) => objects::open(store, &h),
            None => Err(crate::store::error::Error::CorruptRecord {
                key: String::from_utf8_lossy(&e.path).into_owned(),
                reason: "regular file without content".into(),
            }),
        }
    }
}
