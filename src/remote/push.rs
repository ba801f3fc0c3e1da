//! `push NAME[@V] REMOTE`: a template version's missing objects, then its
//! document. Under a push lease (`lease.rs`), so a remote gc never deletes an
//! object this push found present and relies on. The document is written
//! last: a remote document never names an object the remote lacks. A killed
//! push leaves objects no document names (gc's to remove, or the rerun's to
//! skip).

use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::ingest::Progress;
use crate::remote::Remote;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout::{self, TemplateHeader};
use crate::remote::lease::{Lease, LeaseKind};
use crate::remote::transfer::{self, Moved};
use crate::store::catalog::Catalog;
use crate::store::hash::Hash;
use crate::store::manifest::Manifest;
use crate::store::name::TemplateRef;
use crate::store::session::Session;
use crate::store::{Error, Store};

/// How long a push waits before reading its document back: a push of
/// other content under the same name that checked just before this one wrote
/// has written by then.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// What a push did.
#[derive(Clone, Debug, Serialize)]
pub struct PushSummary {
    pub remote: String,
    /// `NAME@V` (or the container) pushed.
    pub pushed: String,
    /// The remote had this exact version already: nothing moved.
    pub already_there: bool,
    #[serde(flatten)]
    pub moved: Moved,
    pub seconds: f64,
}

/// A template version as the local store has it.
pub(crate) struct LocalTemplate {
    pub header: TemplateHeader,
    pub manifest: Manifest,
}

/// Read template `r` for sending; refused if it was pulled lazily and lacks
/// objects.
pub(crate) fn local_template(
    store: &Store,
    r: &TemplateRef,
    what: &'static str,
) -> Result<LocalTemplate> {
    let db = Catalog::open_read_only(store)?;
    let t = db.resolve(r)?;
    if let Some(remote) = db.lazy_remote(&t.name, t.version)? {
        return Err(Error::LazyTemplate {
            template: t.label(),
            remote,
            what,
        }
        .into());
    }
    let manifest = db.manifest(&t.name, t.version)?;
    let image_config = db.image_config(&t.name, t.version)?;
    let objects = transfer::dedup_wanted(manifest.objects());
    let header = TemplateHeader {
        name: t.name.clone(),
        version: t.version,
        digest: manifest.digest().to_hex(),
        entries: manifest.entries.len() as u64,
        logical_bytes: manifest.logical_bytes(),
        objects: objects.len() as u64,
        object_bytes: objects.iter().map(|(_, s)| s).sum(),
        source: t.source.clone(),
        pushed: crate::store::time::now_secs(),
        pushed_by: layout::hostname(),
        image_config,
    };
    Ok(LocalTemplate { header, manifest })
}

/// Pin every object of `m` in a write session (held by the caller while it
/// reads them): a local `gc` meanwhile leaves them alone, even if the
/// template is removed.
pub(crate) fn pin_objects(store: &Store, m: &Manifest) -> Result<Session> {
    let session = Session::begin(store)?;
    for (h, _) in transfer::dedup_wanted(m.objects()) {
        session.pin(&h)?;
    }
    Ok(session)
}

/// Push template version `r` to `remote`.
pub fn push_template(
    store: &Store,
    remote: &Remote,
    r: &TemplateRef,
    progress: &dyn Progress,
) -> Result<PushSummary> {
    let started = Instant::now();
    let local = local_template(store, r, "push")?;
    let _pins = pin_objects(store, &local.manifest)?;
    let c = &remote.client;
    let label = format!("{}@{}", local.header.name, local.header.version);
    let moved = c.block_on(send_template(store, remote, &local, progress))?;
    Ok(PushSummary {
        remote: remote.record.name.clone(),
        pushed: label,
        already_there: moved.is_none(),
        moved: moved.unwrap_or_else(|| Moved {
            objects_skipped: local.header.objects,
            bytes_skipped: local.header.object_bytes,
            ..Moved::default()
        }),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The document a remote has at `key`, if any, decoded.
pub(crate) async fn remote_template(
    remote: &Remote,
    name: &str,
    version: u32,
) -> Result<Option<(TemplateHeader, Manifest)>> {
    let key = layout::template_key(name, version);
    let Some(raw) = remote.client.get(&key).await? else {
        return Ok(None);
    };
    // The decoder checks that the document describes what its key names.
    layout::decode_template(&remote.record.name, &key, &raw).map(Some)
}

/// Send `local` unless the remote has it: `None` when it had.
pub(crate) async fn send_template(
    store: &Store,
    remote: &Remote,
    local: &LocalTemplate,
    progress: &dyn Progress,
) -> Result<Option<Moved>> {
    let (name, version) = (&local.header.name, local.header.version);
    let label = format!("{name}@{version}");
    let conflict = |h: &TemplateHeader| RemoteError::Conflict {
        remote: remote.record.name.clone(),
        what: format!("template {label}"),
        detail: format!(
            "the remote's was pushed by {} from {}; push under another name, or `vzstore remote delete` it first",
            h.pushed_by, h.source
        ),
    };
    // A document means its objects were all sent (documents last); one lost
    // since (a damaged bucket, a hand at work) is found by the listing, a few
    // requests, and sent again below.
    let c = &remote.client;
    if let Some((h, _)) = remote_template(remote, name, version).await? {
        if h.digest != local.header.digest {
            return Err(conflict(&h));
        }
        let wanted = transfer::dedup_wanted(local.manifest.objects());
        let hashes: Vec<Hash> = wanted.iter().map(|(h, _)| *h).collect();
        let present = transfer::index(c, &hashes).await?;
        if hashes.iter().all(|h| present.contains_key(h)) {
            return Ok(None);
        }
        log::warn!(
            "remote {}: {label} lacks {} of its objects; sending them again",
            remote.record.name,
            hashes.iter().filter(|h| !present.contains_key(h)).count()
        );
    }
    let lease = Lease::take(c, LeaseKind::Push).await?;
    let sent = async {
        remote.ensure_format().await?;
        let wanted = transfer::dedup_wanted(local.manifest.objects());
        let hashes: Vec<Hash> = wanted.iter().map(|(h, _)| *h).collect();
        let present = transfer::index(c, &hashes).await?;
        let moved =
            transfer::upload(c, store, &wanted, &present, &Default::default(), progress).await?;
        // Another node may have pushed this version meanwhile: the same
        // content is fine, other content is a conflict (checked again right
        // before writing, and once more after: with no conditional writes,
        // the last document wins and the node that lost is told).
        if let Some((h, _)) = remote_template(remote, name, version).await? {
            return if h.digest == local.header.digest {
                Ok(moved)
            } else {
                Err(conflict(&h))
            };
        }
        let key = layout::template_key(name, version);
        c.put(
            &key,
            Bytes::from(layout::encode_template(&local.header, &local.manifest)),
        )
        .await?;
        tokio::time::sleep(SETTLE).await;
        match remote_template(remote, name, version).await? {
            Some((h, _)) if h.digest != local.header.digest => Err(conflict(&h)),
            _ => Ok(moved),
        }
    }
    .await;
    let released = lease.release(c).await;
    let moved = sent?;
    released?;
    Ok(Some(moved))
}
