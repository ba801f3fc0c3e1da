//! `remote gc`: remove the remote's objects that no document names.
//!
//! Protocol (safe beside pushes from other nodes; see `lease.rs`):
//! 1. take a gc lease: no push is between "which objects does the remote
//!    have?" and "write my document" while gc holds it, and none starts;
//! 2. read every template and container document: the live objects;
//! 3. list the objects; delete those no document names and that are older
//!    than `min_age` (a second guard, against a push from a node whose
//!    clock or lease went wrong);
//! 4. delete leases of dead holders; release the gc lease.
//!
//! A document that cannot be read stops the gc (it could name anything).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::remote::Remote;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout;
use crate::remote::lease::{Lease, LeaseKind};
use crate::store::hash::Hash;

/// What a remote gc did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteGcSummary {
    pub remote: String,
    pub dry_run: bool,
    pub documents: u64,
    pub live_objects: u64,
    /// Unnamed objects removed (or that would be), and their stored bytes.
    pub removed_objects: u64,
    pub removed_bytes: u64,
    /// Unnamed objects kept because they are younger than `min_age`.
    pub young_objects: u64,
    pub stale_leases: u64,
    pub seconds: f64,
}

/// Run a gc on `remote` (see the module documentation).
pub fn gc(remote: &Remote, min_age: Duration, dry_run: bool) -> Result<RemoteGcSummary> {
    let started = Instant::now();
    let c = &remote.client;
    let mut out = c.block_on(async {
        let lease = Lease::take(c, LeaseKind::Gc).await?;
        let r = sweep(remote, min_age, dry_run).await;
        let released = lease.release(c).await;
        let out = r?;
        released?;
        Ok::<_, RemoteError>(out)
    })?;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

async fn sweep(remote: &Remote, min_age: Duration, dry_run: bool) -> Result<RemoteGcSummary> {
    let c = &remote.client;
    let name = &remote.record.name;
    // A document that cannot be read could name anything: no gc then.
    let mut manifests = Vec::new();
    for d in crate::remote::documents(remote, "templates/", layout::decode_template).await? {
        manifests.push(d?.1);
    }
    for d in crate::remote::documents(remote, "containers/", layout::decode_container).await? {
        manifests.push(d?.1);
    }
    let documents = manifests.len() as u64;
    let live: HashSet<Hash> = manifests
        .iter()
        .flat_map(|m| m.objects().map(|(h, _)| h))
        .collect();
    let now = crate::store::time::now_secs();
    let mut out = RemoteGcSummary {
        remote: name.clone(),
        dry_run,
        documents,
        live_objects: live.len() as u64,
        ..RemoteGcSummary::default()
    };
    let mut doomed = Vec::new();
    for l in c.list("objects/").await? {
        let Some((h, _)) = layout::parse_object_key(&l.key) else {
            continue;
        };
        if live.contains(&h) {
            continue;
        }
        if now - l.modified < min_age.as_secs() as i64 {
            out.young_objects += 1;
            continue;
        }
        out.removed_objects += 1;
        out.removed_bytes += l.size;
        doomed.push(l.key);
    }
    let stale = Lease::stale(c).await?;
    out.stale_leases = stale.len() as u64;
    if !dry_run {
        futures::stream::iter(doomed.iter().chain(stale.iter()))
            .map(|k| c.delete(k))
            .buffer_unordered(16)
            .try_collect::<()>()
            .await?;
    }
    Ok(out)
}
