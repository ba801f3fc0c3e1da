//! Verify: re-hash every object in parallel and check that every reference in the
//! metadata resolves. Reports which templates a bad object affects.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::store::Store;
use crate::store::error::Result;
use crate::store::fsutil;
use crate::store::gc;
use crate::store::hash::Hash;
use crate::store::meta::MetaDb;
use crate::store::objects;
use crate::store::session;

/// The findings of a verify run.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub objects_checked: u64,
    pub bytes_checked: u64,
    pub templates_checked: u64,
    /// Objects whose bytes do not hash to their name, with the templates using them.
    pub corrupt: BTreeMap<Hash, BTreeSet<String>>,
    /// Referenced objects that are not in the store, with the templates using them.
    pub missing: BTreeMap<Hash, BTreeSet<String>>,
    /// Objects that could not be read at all, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Metadata records that could not be decoded.
    pub bad_records: Vec<String>,
    /// Objects nothing references (harmless; `gc` removes them).
    pub unreferenced: u64,
    /// Files under `objects/` that are not objects (harmless but unexpected).
    pub strays: Vec<PathBuf>,
    /// Leftovers of crashed write sessions (harmless; `gc` removes them).
    pub dead_sessions: u64,
}

impl VerifyReport {
    /// True when nothing is corrupt, missing, unreadable or undecodable.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.unreadable.is_empty()
            && self.bad_records.is_empty()
    }
}

/// Verify the whole store.
pub fn verify(store: &Store) -> Result<VerifyReport> {
    let _lock = gc::lock(store)?;
    let mut rep = VerifyReport::default();
    let sessions = session::scan(store)?;
    rep.dead_sessions = sessions.dead.len() as u64;

    let mut users: HashMap<Hash, BTreeSet<String>> = HashMap::new();
    {
        let db = MetaDb::open(store)?;
        for t in db.templates()? {
            rep.templates_checked += 1;
            match db.manifest(&t.name, t.version) {
                Ok(m) => {
                    for (h, _) in m.objects() {
                        users.entry(h).or_default().insert(t.label());
                    }
                }
                Err(e) => rep.bad_records.push(format!("{}: {e}", t.label())),
            }
        }
    }

    let listing = objects::list(store)?;
    rep.strays = listing.strays.clone();
    let results: Vec<(Hash, std::result::Result<bool, String>)> = listing
        .objects
        .par_iter()
        .map(|o| {
            let r = File::open(&o.path)
                .and_then(|f| fsutil::hash_mapped(&f))
                .map(|h| Hash::from(h) == o.hash)
                .map_err(|e| e.to_string());
            (o.hash, r)
        })
        .collect();
    let mut present = std::collections::HashSet::new();
    for ((hash, r), o) in results.into_iter().zip(&listing.objects) {
        present.insert(hash);
        rep.objects_checked += 1;
        rep.bytes_checked += o.size;
        match r {
            Ok(true) => {}
            Ok(false) => {
                rep.corrupt
                    .insert(hash, users.get(&hash).cloned().unwrap_or_default());
            }
            Err(e) => rep.unreadable.push((o.path.clone(), e)),
        }
        if !users.contains_key(&hash) {
            rep.unreferenced += 1;
        }
    }
    for (h, u) in users {
        if !present.contains(&h) {
            rep.missing.insert(h, u);
        }
    }
    Ok(rep)
}
