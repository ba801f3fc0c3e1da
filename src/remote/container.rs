//! Moving a container between nodes: `push --container CT` sends its base
//! template version (as `push` does), then the contents of its own files as
//! objects, then a container document: the base, the backend, and the
//! container's whole tree as a manifest. `pull --container CT` brings the
//! base (whole or lazily), the container's own objects (always whole: they
//! are the container's, not the template's), and writes the private area for
//! that tree the way a rebase does (`lifecycle::rebase::stage`): the area is
//! written in `next/`, sealed, the record and its object references committed
//! in one batch, then installed. A crash leaves no container or a whole one.
//!
//! The container must be unmounted on both sides; its private files are read
//! under its mount lock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;

use crate::container::view::{self, Pick, View, ViewEntry};
use crate::ingest::Progress;
use crate::lifecycle::rebase::{self, Switch};
use crate::lifecycle::{IsMounted, hold};
use crate::remote::Remote;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout::{self, ContainerHeader};
use crate::remote::lease::{Lease, LeaseKind};
use crate::remote::pull::{Fetch, PullSummary, find_template, receive_template};
use crate::remote::push::{PushSummary, local_template, send_template};
use crate::remote::transfer::{self, Moved};
use crate::store::catalog::{Backend, Catalog, ContainerRecord};
use crate::store::error::{Error, IoContext};
use crate::store::fstree;
use crate::store::fsutil;
use crate::store::hash::Hash;
use crate::store::manifest::{Kind, Manifest};
use crate::store::name::{self, TemplateRef};
use crate::store::session::Session;
use crate::store::{Store, time};

fn add(a: &mut Moved, b: &Moved) {
    a.objects_moved += b.objects_moved;
    a.bytes_moved += b.bytes_moved;
    a.wire_bytes += b.wire_bytes;
    a.objects_skipped += b.objects_skipped;
    a.bytes_skipped += b.bytes_skipped;
}

/// Push container `ct` (unmounted) to `remote`.
pub fn push_container(
    store: &Store,
    remote: &Remote,
    ct: &str,
    mounted: IsMounted<'_>,
    progress: &dyn Progress,
) -> Result<PushSummary> {
    let started = Instant::now();
    let held = hold(store, ct, "push", mounted)?;
    let base_ref = TemplateRef {
        name: held.rec.template.clone(),
        version: Some(held.rec.version),
    };
    let base = local_template(store, &base_ref, "push --container")?;
    let _pins = crate::remote::push::pin_objects(store, &base.manifest)?;
    // The container's tree with every file's content named by its hash.
    let mut tree = Manifest {
        entries: Vec::with_capacity(held.view.entries.len()),
    };
    let mut own: HashMap<Hash, PathBuf> = HashMap::new();
    let mut hashed: HashMap<PathBuf, Hash> = HashMap::new();
    for v in &held.view.entries {
        let mut e = v.entry.clone();
        if let Some(p) = &v.private {
            let h = match hashed.get(p) {
                Some(h) => *h,
                None => {
                    let (h, _) = view::hash_private(p)?;
                    hashed.insert(p.clone(), h);
                    h
                }
            };
            e.hash = Some(h);
            own.entry(h).or_insert_with(|| p.clone());
        }
        tree.entries.push(e);
    }
    let header = ContainerHeader {
        name: ct.to_string(),
        backend: held.rec.backend.name().to_string(),
        template: held.rec.template.clone(),
        version: held.rec.version,
        template_digest: base.header.digest.clone(),
        digest: tree.digest().to_hex(),
        pushed: time::now_secs(),
        pushed_by: layout::hostname(),
    };
    let c = &remote.client;
    let moved = c.block_on(async {
        let mut moved = send_template(store, remote, &base, progress)
            .await?
            .unwrap_or_default();
        let lease = Lease::take(c, LeaseKind::Push).await?;
        let sent = async {
            remote.ensure_format().await?;
            let wanted = transfer::dedup_wanted(tree.objects());
            let hashes: Vec<Hash> = wanted.iter().map(|(h, _)| *h).collect();
            let present = transfer::index(c, &hashes).await?;
            let m = transfer::upload(c, store, &wanted, &present, &own, progress).await?;
            c.put(
                &layout::container_key(ct),
                Bytes::from(layout::encode_container(&header, &tree)),
            )
            .await?;
            Ok::<_, RemoteError>(m)
        }
        .await;
        let released = lease.release(c).await;
        add(&mut moved, &sent?);
        released?;
        Ok::<_, RemoteError>(moved)
    })?;
    drop(held);
    Ok(PushSummary {
        remote: remote.record.name.clone(),
        pushed: format!("container {ct}"),
        already_there: false,
        moved,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pull container `ct` from `remote`: its base template (lazily if `fetch`
/// says so; FUSE containers only), its own objects, its area.
pub fn pull_container(
    store: &Store,
    remote: &Remote,
    ct: &str,
    fetch: Fetch,
    progress: &dyn Progress,
) -> Result<PullSummary> {
    let started = Instant::now();
    name::validate(ct)?;
    if Catalog::open_read_only(store)?.container(ct)?.is_some() {
        return Err(Error::ContainerExists(ct.to_string()).into());
    }
    let c = &remote.client;
    let key = layout::container_key(ct);
    let (header, tree) = c.block_on(async {
        let raw = c.get(&key).await?.ok_or_else(|| RemoteError::NotOnRemote {
            remote: remote.record.name.clone(),
            what: format!("container {ct}"),
        })?;
        layout::decode_container(&remote.record.name, &key, &raw)
    })?;
    let backend = match header.backend.as_str() {
        "fuse" => Backend::Fuse,
        "kernel" => Backend::Kernel,
        other => {
            return Err(RemoteError::BadDocument {
                remote: remote.record.name.clone(),
                key,
                reason: format!("unknown backend {other:?}"),
            });
        }
    };
    let base_label = format!("{}@{}", header.template, header.version);
    if backend == Backend::Kernel && fetch == Fetch::Lazy {
        return Err(Error::LazyTemplate {
            template: base_label,
            remote: remote.record.name.clone(),
            what: "a kernel container",
        }
        .into());
    }
    let base_ref = TemplateRef {
        name: header.template.clone(),
        version: Some(header.version),
    };
    let (th, base) = c.block_on(find_template(remote, &base_ref))?;
    if th.digest != header.template_digest {
        return Err(RemoteError::Conflict {
            remote: remote.record.name.clone(),
            what: format!("the base {base_label} of container {ct}"),
            detail: "the remote's template document is not the one the container was pushed on"
                .into(),
        });
    }
    let (mut moved, warnings, _) = receive_template(store, remote, &th, &base, fetch, progress)?;
    // The container's own objects, always whole.
    let session = Session::begin(store)?;
    let in_base: std::collections::HashSet<Hash> = base.objects().map(|(h, _)| h).collect();
    let mut missing = Vec::new();
    for (h, size) in transfer::dedup_wanted(tree.objects()) {
        if in_base.contains(&h) {
            continue;
        }
        if session.pin_and_check(&h, size)? {
            moved.objects_skipped += 1;
            moved.bytes_skipped += size;
        } else {
            missing.push((h, size));
        }
    }
    let what = format!("container {ct}");
    let got = c.block_on(transfer::fetch_missing(
        c, &session, &what, &missing, progress,
    ))?;
    add(&mut moved, &got);
    session.publish()?;
    install(store, ct, &header, backend, &base, &tree)?;
    drop(session);
    Ok(PullSummary {
        remote: remote.record.name.clone(),
        pulled: format!("container {ct} on {base_label}"),
        lazy: fetch == Fetch::Lazy,
        already_there: false,
        moved,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Write and commit container `ct`'s area for `tree` on `base`.
fn install(
    store: &Store,
    ct: &str,
    header: &ContainerHeader,
    backend: Backend,
    base: &Manifest,
    tree: &Manifest,
) -> Result<()> {
    let dir = crate::container::private_dir(store, ct);
    if std::fs::symlink_metadata(&dir).is_ok() {
        // A pull or create that died before its commit; nothing refers to it.
        fstree::remove(&dir).at(&dir)?;
    }
    fsutil::create_private_dir(&dir).at(&dir)?;
    let rec = ContainerRecord {
        name: ct.to_string(),
        template: header.template.clone(),
        version: header.version,
        created: time::now_secs(),
        backend,
    };
    let r = (|| {
        if backend == Backend::Kernel {
            // The image the upper directory's overlay will sit on.
            let t = Catalog::open_read_only(store)?.resolve(&TemplateRef {
                name: rec.template.clone(),
                version: Some(rec.version),
            })?;
            let checked = crate::store::image::open_checked(store, &t, &mut || Ok(base.clone()))?;
            if let Some((digest, h)) = checked.record {
                Catalog::open(store)?.set_template_image(&t, digest, h)?;
            }
        }
        let (view, picks) = view_of(tree, base);
        let staged = rebase::stage(store, &dir, &rec, base, &view, &picks)?;
        rebase::install(store, &[staged], Switch::Record)
    })();
    if r.is_err() && Catalog::open_read_only(store)?.container(ct)?.is_none() {
        let _ = fstree::remove(&dir);
    }
    Ok(r?)
}

/// A remote container tree as a view (every file an object) and the picks
/// of its paths: the base's entry where it is the same, the tree's own
/// otherwise.
fn view_of(tree: &Manifest, base: &Manifest) -> (View, Vec<(Vec<u8>, Pick)>) {
    let in_base: HashMap<&[u8], usize> = base
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.path.as_slice(), i))
        .collect();
    let mut view = View::default();
    let mut picks = Vec::with_capacity(tree.entries.len());
    for (j, e) in tree.entries.iter().enumerate() {
        // Names of one inode share their link group; every other entry is
        // its own inode.
        let inode = if e.link_group != 0 && e.kind != Kind::Dir {
            u64::from(e.link_group)
        } else {
            (1 << 32) + j as u64
        };
        let v = ViewEntry {
            entry: e.clone(),
            private: None,
            inode,
        };
        let pick = match in_base.get(e.path.as_slice()) {
            // Directories too must keep their own mtime (a view's
            // comparison ignores it; a moved container must not).
            Some(&i)
                if view::same_as(&v, &base.entries[i])
                    && (e.mtime_sec, e.mtime_nsec)
                        == (base.entries[i].mtime_sec, base.entries[i].mtime_nsec)
                    && (e.link_group == 0) == (base.entries[i].link_group == 0) =>
            {
                Pick::Base(i)
            }
            _ => Pick::Own(j),
        };
        view.entries.push(v);
        picks.push((e.path.clone(), pick));
    }
    (view, picks)
}
