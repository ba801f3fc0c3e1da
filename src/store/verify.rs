//! Verify: re-hash every object in parallel and check that every reference in the
//! catalog resolves. Each bad object is reported with the templates, the file
//! paths in them and the containers (by their base) that it affects.
//!
//! Repair ([`repair`]): a corrupt or missing object is restored from source
//! directories that hold the same content (the trees the templates came from,
//! an export, another node's copy) through [`crate::store::fetch`]: every
//! regular file of those trees whose size matches a wanted object is hashed, and
//! a match is staged and published through a write session like any ingest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use crate::store::Store;
use crate::store::catalog::{Backend, Catalog, TemplateRecord};
use crate::store::error::{Error, IoContext, Result};
use crate::store::fetch::{self, DirObjects};
use crate::store::fsutil;
use crate::store::gc;
use crate::store::hash::Hash;
use crate::store::image::{self, ImageState};
use crate::store::integrity::{self, Ctime};
use crate::store::manifest::Manifest;
use crate::store::objects;
use crate::store::session;

/// What is wrong with an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Problem {
    /// Its bytes do not hash to its name (a flipped byte, a truncation).
    Corrupt,
    /// A manifest names it and the store does not have it.
    Missing,
}

/// One bad object and what it affects.
#[derive(Clone, Debug, Serialize)]
pub struct BadObject {
    /// The object's name (blake3, hex).
    pub hash: String,
    pub problem: Problem,
    /// Logical size the manifests record.
    pub size: u64,
    /// Template versions that use it (`name@version`).
    pub templates: BTreeSet<String>,
    /// File paths that have this content, as `name@version:/path`.
    pub paths: BTreeSet<String>,
    /// Containers whose base template uses it (those that copied the file up
    /// are not affected, but are listed: their base still names it).
    pub containers: BTreeSet<String>,
}

/// The findings of a verify run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VerifyReport {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub templates_checked: u64,
    /// Corrupt and missing objects, sorted by hash.
    pub bad: Vec<BadObject>,
    /// Objects that could not be read at all: (path, reason).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Catalog records that could not be decoded.
    pub bad_records: Vec<String>,
    /// Objects nothing references (harmless; `gc` removes them).
    pub unreferenced: u64,
    /// Files under `objects/` that are not objects (harmless but unexpected).
    pub strays: Vec<PathBuf>,
    /// Leftovers of crashed write sessions (harmless; `gc` removes them).
    pub dead_sessions: u64,
    /// Objects of lazily pulled templates not fetched yet (fetched on first
    /// open; not damage).
    pub lazy_objects: u64,
    /// Kernel images compared with what the writer makes of their manifest.
    pub images_checked: u64,
    /// Kernel images that differ from it (`--repair` writes them again).
    pub bad_images: Vec<BadImage>,
    /// Images no template version names (harmless; `gc` removes them).
    pub unused_images: u64,
    /// Mounted kernel containers that still read a damaged image (filled in
    /// by the caller, which knows mounts): they must be mounted again.
    pub stale_mounts: Vec<String>,
    /// Template versions whose image was not checked because some of their
    /// objects are bad (`--repair` checks them once the objects are restored).
    pub images_unchecked: Vec<String>,
    /// What `--repair` did, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairSummary>,
}

impl VerifyReport {
    /// True when nothing is corrupt, missing, unreadable or undecodable.
    pub fn is_clean(&self) -> bool {
        self.bad.is_empty()
            && self.unreadable.is_empty()
            && self.bad_records.is_empty()
            && self.bad_images.iter().all(|b| b.repaired)
            && self.stale_mounts.is_empty()
    }

    /// Objects of one problem kind.
    pub fn with_problem(&self, p: Problem) -> impl Iterator<Item = &BadObject> {
        self.bad.iter().filter(move |b| b.problem == p)
    }
}

/// A kernel image that is not what its manifest makes.
#[derive(Clone, Debug, Serialize)]
pub struct BadImage {
    /// `name@version` of the template version (one of them, if several share it).
    pub template: String,
    pub path: PathBuf,
    /// Kernel containers whose base it is (mounted ones read the damaged
    /// image until they are mounted again).
    pub containers: BTreeSet<String>,
    /// Whether `--repair` wrote it again.
    pub repaired: bool,
}

/// Who uses an object.
#[derive(Default)]
struct Users {
    size: u64,
    templates: BTreeSet<String>,
    paths: BTreeSet<String>,
}

/// Verify the whole store.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let _lock = gc::lock(store)?;
    let mut rep = VerifyReport::default();
    let sessions = session::scan(store)?;
    rep.dead_sessions = sessions.dead.len() as u64;

    let mut users: HashMap<Hash, Users> = HashMap::new();
    let mut containers_of: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut kernel_containers_of: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut manifests = Vec::new();
    let mut lazy = HashSet::new();
    {
        let db = Catalog::open_read_only(store)?;
        for ((name, version), _) in db.lazy_templates()? {
            lazy.insert(format!("{name}@{version}"));
        }
        for t in db.templates()? {
            rep.templates_checked += 1;
            match db.manifest(&t.name, t.version) {
                Ok(m) => {
                    for e in &m.entries {
                        if let Some(h) = e.hash {
                            let u = users.entry(h).or_default();
                            u.size = e.size;
                            u.templates.insert(t.label());
                            u.paths.insert(format!(
                                "{}:/{}",
                                t.label(),
                                String::from_utf8_lossy(&e.path)
                            ));
                        }
                    }
                    // A lazily pulled version has no image until a full
                    // pull brings every object.
                    if !lazy.contains(&t.label()) {
                        manifests.push((t, m));
                    }
                }
                Err(e) => rep.bad_records.push(format!("{}: {e}", t.label())),
            }
        }
        match db.containers() {
            Ok(cs) => {
                for c in cs {
                    if db.manifest(&c.template, c.version).is_err() {
                        rep.bad_records.push(format!(
                            "container {}: its base {} is missing",
                            c.name,
                            c.base_label()
                        ));
                    }
                    if c.backend == Backend::Kernel {
                        kernel_containers_of
                            .entry(c.base_label())
                            .or_default()
                            .insert(c.name.clone());
                    }
                    containers_of
                        .entry(c.base_label())
                        .or_default()
                        .insert(c.name);
                }
            }
            Err(e) => rep.bad_records.push(format!("containers: {e}")),
        }
        // Objects containers refer to beyond their base (rebase, dedup).
        match db.all_container_refs() {
            Ok(all) => {
                for (ct, refs) in all {
                    for h in refs {
                        users
                            .entry(h)
                            .or_default()
                            .paths
                            .insert(format!("a file of container {ct}"));
                    }
                }
            }
            Err(e) => rep.bad_records.push(format!("container references: {e}")),
        }
    }

    let listing = objects::list(store)?;
    rep.strays = listing.strays.clone();
    // Each object is hashed with its ctime taken before and after: a good one
    // whose ctime held still is recorded as checked for the mount daemons.
    let results: Vec<std::result::Result<(bool, Option<Ctime>), String>> = listing
        .objects
        .par_iter()
        .map(|o| {
            let f = File::open(&o.path).map_err(|e| e.to_string())?;
            let ctime = |f: &File| {
                f.metadata()
                    .map(|m| (m.ctime(), m.ctime_nsec() as u32))
                    .map_err(|e| e.to_string())
            };
            let before = ctime(&f)?;
            let good = fsutil::hash_mapped(&f).map_err(|e| e.to_string())? == o.hash.0;
            let steady = ctime(&f)? == before;
            Ok((good, (good && steady).then_some(before)))
        })
        .collect();
    let mut checked = Vec::new();
    let mut present = HashSet::new();
    let mut bad = Vec::new();
    for (r, o) in results.into_iter().zip(&listing.objects) {
        present.insert(o.hash);
        rep.objects_checked += 1;
        rep.bytes_checked += o.size;
        match r {
            Ok((true, ctime)) => checked.extend(ctime.map(|c| (o.hash, c))),
            Ok((false, _)) => bad.push((o.hash, Problem::Corrupt)),
            Err(e) => rep.unreadable.push((o.path.clone(), e)),
        }
        if !users.contains_key(&o.hash) {
            rep.unreferenced += 1;
        }
    }
    for (h, u) in &users {
        if present.contains(h) {
            continue;
        }
        let only_lazy = !u.templates.is_empty()
            && u.templates.iter().all(|t| lazy.contains(t))
            && !u.paths.iter().any(|p| p.starts_with("a file of container"));
        if only_lazy {
            rep.lazy_objects += 1;
        } else {
            bad.push((*h, Problem::Missing));
        }
    }
    if let Err(e) = integrity::compact(store, Some(&checked)) {
        log::warn!("recording checked objects: {e}");
    }
    bad.sort();
    let bad_hashes: HashSet<Hash> = bad.iter().map(|(h, _)| *h).collect();
    check_images(
        store,
        &mut rep,
        &manifests,
        &bad_hashes,
        &kernel_containers_of,
    )?;
    for (hash, problem) in bad {
        let u = users.remove(&hash).unwrap_or_default();
        let containers = u
            .templates
            .iter()
            .filter_map(|t| containers_of.get(t))
            .flatten()
            .cloned()
            .collect();
        rep.bad.push(BadObject {
            hash: hash.to_hex(),
            problem,
            size: u.size,
            templates: u.templates,
            paths: u.paths,
            containers,
        });
    }
    Ok(rep)
}

/// Compare every kernel image with what the writer makes of its manifest. A
/// template with a bad object is skipped (the object is reported; its image
/// is checked again once the object is restored).
fn check_images(
    store: &Store,
    rep: &mut VerifyReport,
    manifests: &[(TemplateRecord, Manifest)],
    bad_objects: &HashSet<Hash>,
    containers_of: &HashMap<String, BTreeSet<String>>,
) -> Result<()> {
    let mut wanted = HashSet::new();
    for (t, m) in manifests {
        let (path, state) = match m.objects().any(|(h, _)| bad_objects.contains(&h)) {
            true => {
                rep.images_unchecked.push(t.label());
                (image::path_for(store, &m.digest()), None)
            }
            false => match image::check(store, t, m) {
                Ok((p, s)) => (p, Some(s)),
                // Not a tree the kernel backend can show: no image to check.
                Err(Error::Image { .. }) => (image::path_for(store, &m.digest()), None),
                Err(e) => return Err(e),
            },
        };
        if !wanted.insert(path.clone()) {
            continue;
        }
        match state {
            Some(ImageState::Good) => rep.images_checked += 1,
            Some(ImageState::Damaged) => {
                rep.images_checked += 1;
                rep.bad_images.push(BadImage {
                    template: t.label(),
                    path,
                    containers: containers_of.get(&t.label()).cloned().unwrap_or_default(),
                    repaired: false,
                });
            }
            Some(ImageState::Missing) | None => {}
        }
    }
    if let Ok(rd) = std::fs::read_dir(image::images_dir(store)) {
        rep.unused_images = rd
            .filter_map(|e| e.ok())
            .filter(|e| !wanted.contains(&e.path()))
            .count() as u64;
    }
    Ok(())
}

/// Check the images that were skipped for bad objects, now that repair has
/// restored what it could; those still with bad objects stay unchecked.
fn check_unchecked_images(store: &Store, rep: &mut VerifyReport) -> Result<()> {
    if rep.images_unchecked.is_empty() {
        return Ok(());
    }
    let still_bad: HashSet<Hash> = rep
        .bad
        .iter()
        .filter_map(|b| Hash::from_hex(&b.hash))
        .collect();
    let db = Catalog::open_read_only(store)?;
    let mut manifests = Vec::new();
    let mut kernel: HashMap<String, BTreeSet<String>> = HashMap::new();
    for c in db.containers()? {
        if c.backend == Backend::Kernel {
            kernel.entry(c.base_label()).or_default().insert(c.name);
        }
    }
    for label in std::mem::take(&mut rep.images_unchecked) {
        let t = db.resolve(&crate::store::name::TemplateRef::parse(&label)?)?;
        let m = db.manifest(&t.name, t.version)?;
        manifests.push((t, m));
    }
    drop(db);
    let before = rep.unused_images;
    check_images(store, rep, &manifests, &still_bad, &kernel)?;
    rep.unused_images = before;
    Ok(())
}

/// Write damaged kernel images again (after objects were restored).
fn rewrite_images(store: &Store, rep: &mut VerifyReport) -> Result<()> {
    if rep.bad_images.is_empty() {
        return Ok(());
    }
    let db = Catalog::open_read_only(store)?;
    let mut todo = Vec::new();
    for b in &rep.bad_images {
        let r = crate::store::name::TemplateRef::parse(&b.template)?;
        let t = db.resolve(&r)?;
        let m = db.manifest(&t.name, t.version)?;
        todo.push((t, m));
    }
    drop(db);
    for (b, (t, m)) in rep.bad_images.iter_mut().zip(todo) {
        image::rewrite(store, &t, &m)?;
        b.repaired = true;
    }
    Ok(())
}

/// What a repair did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RepairSummary {
    /// Objects restored, by hash.
    pub restored: Vec<String>,
    /// Objects no source held, by hash.
    pub unrestored: Vec<String>,
}

/// Restore the bad objects of `rep` from the regular files under `sources`, then
/// drop them from `rep` and record what was done in `rep.repair`. Unreferenced
/// corrupt objects are restored too when a source has them; what no source holds
/// stays in `rep` and is named.
pub fn repair(store: &Store, rep: &mut VerifyReport, sources: &[PathBuf]) -> Result<()> {
    for src in sources {
        std::fs::metadata(src).at(src)?;
    }
    let sum = restore(store, rep, sources)?;
    rep.repair = Some(sum);
    check_unchecked_images(store, rep)?;
    rewrite_images(store, rep)
}

fn restore(store: &Store, rep: &mut VerifyReport, sources: &[PathBuf]) -> Result<RepairSummary> {
    let mut wanted: HashMap<Hash, u64> = HashMap::new();
    for b in &rep.bad {
        if let Some(h) = Hash::from_hex(&b.hash) {
            wanted.insert(h, b.size);
        }
    }
    let mut sum = RepairSummary::default();
    if wanted.is_empty() {
        return Ok(sum);
    }
    let source = DirObjects::index(sources, &wanted)?;
    let restored: HashSet<Hash> = fetch::fetch(store, &source, &wanted)?.into_iter().collect();
    rep.bad.retain(|b| match Hash::from_hex(&b.hash) {
        Some(h) if restored.contains(&h) => {
            sum.restored.push(b.hash.clone());
            false
        }
        _ => {
            sum.unrestored.push(b.hash.clone());
            true
        }
    });
    Ok(sum)
}
