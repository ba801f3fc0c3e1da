//! Accounting: what is stored, what is shared, and what deleting a template would
//! free.
//!
//! Definitions (also in README):
//! - logical bytes: file content a plain copy of the tree would hold (each
//!   hardlink group once);
//! - shared bytes of a template: logical size of its distinct objects that some
//!   other template also uses;
//! - exclusive bytes: allocated bytes on disk of the objects only it uses, which is
//!   what removing it (and running gc) frees;
//! - stored bytes: allocated bytes of everything under `objects/`, equal to
//!   `du -s -B1 <store>/objects`;
//! - metadata bytes: allocated bytes under `meta/` (the catalog) and `images/`
//!   (the kernel backend's images), equal to `du -s -B1 <store>/meta <store>/images`.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::store::Store;
use crate::store::catalog::{Catalog, ContainerRecord};
use crate::store::error::Result;
use crate::store::hash::Hash;
use crate::store::image;
use crate::store::manifest::Manifest;
use crate::store::objects;

/// Store-wide totals.
#[derive(Debug, Clone, Serialize)]
pub struct StoreUsage {
    /// Templates' plus containers' logical bytes.
    pub logical_bytes: u64,
    /// Allocated bytes under `objects/` (`du -s -B1 objects`).
    pub stored_bytes: u64,
    /// Allocated bytes under `private/` (`du -s -B1 private`).
    pub private_bytes: u64,
    pub metadata_bytes: u64,
    pub objects: u64,
    /// logical / (object bytes + private bytes); 1.0 for an empty store.
    pub dedup_ratio: f64,
    /// logical - (stored + private), never below zero.
    pub saved_bytes: u64,
    /// Private bytes `vzstore dedup` would free now (filled in by the caller,
    /// which can read containers; 0 when not measured).
    pub dedup_would_free: u64,
}

/// One template version's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateUsage {
    pub name: String,
    pub version: u32,
    pub entries: u64,
    pub files: u64,
    pub objects: u64,
    pub logical_bytes: u64,
    pub shared_bytes: u64,
    pub exclusive_bytes: u64,
}

/// One container's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerUsage {
    pub name: String,
    /// Base template as `name@version`.
    pub template: String,
    /// Logical bytes of its files as the container sees them.
    pub logical_bytes: u64,
    /// Logical bytes still served from shared objects.
    pub shared_bytes: u64,
    /// Allocated bytes of its private area (copy-on-write data and state):
    /// what destroying it frees.
    pub private_bytes: u64,
    /// Paths of its tree that differ from its base (changed, added, removed):
    /// how far it drifted from the template.
    pub changed_paths: u64,
}

/// The full report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub store: StoreUsage,
    pub templates: Vec<TemplateUsage>,
    pub containers: Vec<ContainerUsage>,
}

/// The figures of one container tree, as the container layer computes them
/// from its base manifest and its private area (the store knows no trees).
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeUsage {
    /// Logical bytes of all regular files (each inode once).
    pub logical_bytes: u64,
    /// Logical bytes still served from shared objects.
    pub shared_bytes: u64,
    /// Paths that differ from the base (changed, added or removed).
    pub changed_paths: u64,
}

/// Measures a container tree: `(its record, base manifest, private directory)`
/// -> usage.
pub type MeasureTree<'a> = &'a dyn Fn(&ContainerRecord, Manifest, &Path) -> Result<TreeUsage>;

/// Compute the report; `measure` computes each container's tree figures.
pub fn report(store: &Store, measure: MeasureTree<'_>) -> Result<Report> {
    // Read what is needed with the catalog open, then close it before the slow
    // part (rebuilding each container's inode table, measuring directories), so
    // creates and ingests are not held up.
    let (containers_in, templates_in) = {
        let db = Catalog::open_read_only(store)?;
        let mut cs = Vec::new();
        for c in db.containers()? {
            let base = db.manifest(&c.template, c.version).ok();
            cs.push((c, base));
        }
        let mut ts = Vec::new();
        for t in db.templates()? {
            let m = db.manifest(&t.name, t.version)?;
            ts.push((t, m));
        }
        (cs, ts)
    };
    // Test builds: a pause here shows that the catalog is closed meanwhile.
    #[cfg(feature = "failpoints")]
    fail::fail_point!("report-measure");
    let mut containers = Vec::new();
    for (c, base) in containers_in {
        let dir = store.container_dir(&c.name);
        let u = match base {
            Some(m) => measure(&c, m, &dir)?,
            None => Default::default(), // base removed: nothing is shared
        };
        containers.push(ContainerUsage {
            name: c.name.clone(),
            template: c.base_label(),
            logical_bytes: u.logical_bytes,
            shared_bytes: u.shared_bytes,
            private_bytes: objects::du(&dir)?,
            changed_paths: u.changed_paths,
        });
    }
    let mut per_template = Vec::new();
    for (t, m) in templates_in {
        let files = m.entries.iter().filter(|e| e.hash.is_some()).count() as u64;
        let objs: HashMap<Hash, u64> = m.objects().collect();
        per_template.push((t, files, m.logical_bytes(), objs));
    }
    let listing = objects::list(store)?;
    let allocated: HashMap<Hash, u64> = listing
        .objects
        .iter()
        .map(|o| (o.hash, o.allocated))
        .collect();
    let mut users: HashMap<Hash, u32> = HashMap::new();
    for (_, _, _, objs) in &per_template {
        for h in objs.keys() {
            *users.entry(*h).or_default() += 1;
        }
    }
    let mut templates = Vec::new();
    let mut logical_total = 0;
    for (t, files, logical, objs) in &per_template {
        let (mut shared, mut exclusive) = (0, 0);
        for (h, size) in objs {
            if users[h] > 1 {
                shared += size;
            } else {
                exclusive += allocated.get(h).copied().unwrap_or(0);
            }
        }
        logical_total += logical;
        templates.push(TemplateUsage {
            name: t.name.clone(),
            version: t.version,
            entries: t.entries,
            files: *files,
            objects: objs.len() as u64,
            logical_bytes: *logical,
            shared_bytes: shared,
            exclusive_bytes: exclusive,
        });
    }
    let stored = listing.stored_bytes();
    let private = objects::du(&store.private_dir())?;
    logical_total += containers.iter().map(|c| c.logical_bytes).sum::<u64>();
    let object_bytes: u64 = listing.objects.iter().map(|o| o.allocated).sum::<u64>() + private;
    Ok(Report {
        store: StoreUsage {
            logical_bytes: logical_total,
            stored_bytes: stored,
            private_bytes: private,
            metadata_bytes: objects::du(&store.meta_dir())? + image::stored_bytes(store)?,
            objects: listing.objects.len() as u64,
            dedup_ratio: if object_bytes == 0 {
                1.0
            } else {
                logical_total as f64 / object_bytes as f64
            },
            saved_bytes: logical_total.saturating_sub(stored + private),
            dedup_would_free: 0,
        },
        templates,
        containers,
    })
}
