//! `pull NAME[@V] REMOTE`: a template version's document, the objects the
//! store lacks (through one write session: pinned against gc, checked by
//! blake3, published in batches so a rerun resumes), then the kernel image
//! and the catalog record, under the version number the remote gives.
//!
//! `--lazy` records the template at once, with the remote's name beside it:
//! its objects are fetched on first open by the FUSE daemons of its
//! containers (`lazy.rs`); a later full pull fetches the rest.

use std::time::Instant;

use serde::Serialize;

use crate::ingest::Progress;
use crate::remote::Remote;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout::TemplateHeader;
use crate::remote::push::remote_template;
use crate::remote::transfer::{self, Moved};
use crate::store::Store;
use crate::store::catalog::{Catalog, NewTemplate, TemplateRecord};
use crate::store::error::Error;
use crate::store::hash::Hash;
use crate::store::image;
use crate::store::manifest::Manifest;
use crate::store::name::TemplateRef;
use crate::store::session::Session;

/// Whether a pull fetches every object now or on first open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    All,
    Lazy,
}

/// What a pull did.
#[derive(Clone, Debug, Serialize)]
pub struct PullSummary {
    pub remote: String,
    pub pulled: String,
    pub lazy: bool,
    /// The store had this exact version (and all its objects) already.
    pub already_there: bool,
    #[serde(flatten)]
    pub moved: Moved,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// The newest version of `name` on the remote.
pub(crate) async fn latest_version(remote: &Remote, name: &str) -> Result<u32> {
    let listed = remote.client.list(&format!("templates/{name}/")).await?;
    listed
        .iter()
        .filter_map(|l| l.key.rsplit('/').next()?.parse::<u32>().ok())
        .max()
        .ok_or_else(|| RemoteError::NotOnRemote {
            remote: remote.record.name.clone(),
            what: format!("template {name}"),
        })
}

/// The remote's document for `r` (its newest version when none is given).
pub(crate) async fn find_template(
    remote: &Remote,
    r: &TemplateRef,
) -> Result<(TemplateHeader, Manifest)> {
    let version = match r.version {
        Some(v) => v,
        None => latest_version(remote, &r.name).await?,
    };
    remote_template(remote, &r.name, version)
        .await?
        .ok_or_else(|| RemoteError::NotOnRemote {
            remote: remote.record.name.clone(),
            what: format!("template {}@{version}", r.name),
        })
}

/// Pull template version `r` from `remote`.
pub fn pull_template(
    store: &Store,
    remote: &Remote,
    r: &TemplateRef,
    fetch: Fetch,
    progress: &dyn Progress,
) -> Result<PullSummary> {
    let started = Instant::now();
    let (header, manifest) = remote.client.block_on(find_template(remote, r))?;
    let (moved, warnings, already) =
        receive_template(store, remote, &header, &manifest, fetch, progress)?;
    Ok(PullSummary {
        remote: remote.record.name.clone(),
        pulled: format!("{}@{}", header.name, header.version),
        lazy: fetch == Fetch::Lazy,
        already_there: already,
        moved,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Bring a remote template version into the store (see the module
/// documentation). Returns what moved, warnings, and whether the store had
/// it all already.
pub(crate) fn receive_template(
    store: &Store,
    remote: &Remote,
    header: &TemplateHeader,
    manifest: &Manifest,
    fetch: Fetch,
    progress: &dyn Progress,
) -> Result<(Moved, Vec<String>, bool)> {
    let label = format!("{}@{}", header.name, header.version);
    crate::store::name::validate(&header.name)?;
    let here: Option<(TemplateRecord, Option<String>)> = {
        let db = Catalog::open_read_only(store)?;
        let found = db
            .versions(&header.name)?
            .into_iter()
            .find(|t| t.version == header.version);
        match found {
            Some(t) => {
                let lazy = db.lazy_remote(&t.name, t.version)?;
                Some((t, lazy))
            }
            None => None,
        }
    };
    if let Some((t, lazy)) = &here {
        if t.digest.map(|d| d.to_hex()).as_deref() != Some(header.digest.as_str()) {
            return Err(RemoteError::Conflict {
                remote: remote.record.name.clone(),
                what: format!("template {label}"),
                detail: "this store has other content under that name and version".into(),
            });
        }
        if lazy.is_none() || fetch == Fetch::Lazy {
            let wanted = transfer::dedup_wanted(manifest.objects());
            return Ok((
                Moved {
                    objects_skipped: wanted.len() as u64,
                    bytes_skipped: wanted.iter().map(|(_, s)| s).sum(),
                    ..Moved::default()
                },
                Vec::new(),
                true,
            ));
        }
    }
    let session = Session::begin(store)?;
    let mut moved = Moved::default();
    let mut missing = Vec::new();
    for (h, size) in transfer::dedup_wanted(manifest.objects()) {
        if session.pin_and_check(&h, size)? {
            moved.objects_skipped += 1;
            moved.bytes_skipped += size;
        } else {
            missing.push((h, size));
        }
    }
    if fetch == Fetch::Lazy {
        // The objects come later, but a document naming objects the remote
        // lacks is refused now, as a full pull would.
        let c = &remote.client;
        let what = format!("template {label}");
        c.block_on(transfer::locate(c, &what, &missing))?;
    }
    let mut warnings = Vec::new();
    let mut image_hash = None;
    let mut image_bytes = None;
    if fetch == Fetch::All {
        let c = &remote.client;
        let what = format!("template {label}");
        let got = c.block_on(transfer::fetch_missing(
            c, &session, &what, &missing, progress,
        ))?;
        moved.objects_moved = got.objects_moved;
        moved.bytes_moved = got.bytes_moved;
        moved.wire_bytes = got.wire_bytes;
        session.publish()?;
        match image::render_pinned(store, manifest, &label, image::Pinned::BesideGc) {
            Ok(bytes) => {
                image_hash = Some(Hash::of(&bytes));
                image_bytes = Some(bytes);
            }
            Err(e @ Error::Image { .. }) => warnings.push(format!(
                "{e}; kernel containers cannot use it, FUSE ones can"
            )),
            Err(e) => return Err(e.into()),
        }
    }
    let db = Catalog::open(store)?;
    match &here {
        // A lazily pulled version, now whole.
        Some((t, _)) => db.finish_lazy(t, image_hash)?,
        None => {
            let source = format!("remote {} ({})", remote.record.name, remote.record.url());
            let new = NewTemplate {
                name: &header.name,
                version: header.version,
                source: &source,
                image: image_hash,
                config: header.image_config.as_ref(),
                lazy_from: (fetch == Fetch::Lazy).then_some(remote.record.name.as_str()),
            };
            db.commit_pulled_template(&new, manifest)?;
        }
    }
    drop(db);
    drop(session);
    if let Some(bytes) = image_bytes
        && let Err(e) = image::write(store, &manifest.digest(), &bytes)
    {
        warnings.push(format!(
            "template {label} has no kernel image yet: {e}; the first kernel container of it writes it"
        ));
    }
    Ok((moved, warnings, false))
}
