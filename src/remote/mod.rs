//! Remotes: templates and containers travel between nodes through an S3
//! bucket (`layout.rs` says what the bucket holds).
//!
//! The rules every operation keeps:
//! - objects first, documents last: a document on a remote never names an
//!   object the remote lacks (`push.rs`);
//! - only missing objects move, found by listing the fan-out folders the
//!   wanted objects fall in (`transfer.rs`);
//! - nothing enters the store unchecked: every object is hashed on arrival and
//!   enters through a write session (`pull.rs`), so gc and crashes are handled
//!   as for an ingest; every document's manifest is checked against its digest;
//! - a remote gc and a push on another node never overlap (`lease.rs`), since
//!   S3 has no locks and Garage ignores conditional writes;
//! - credentials are never stored in the catalog nor printed
//!   (`credentials.rs`).
//!
//! This layer sits above the store, the ingest pipeline and the lifecycle
//! (container moves reuse rebase's area writing); the mount layer never
//! imports it: a FUSE daemon of a lazily pulled template is handed a
//! [`lazy::LazySource`] as a `store::fetch::ObjectSource`.

pub mod client;
pub mod container;
pub mod credentials;
pub mod error;
pub mod gc;
pub mod layout;
pub mod lazy;
pub mod lease;
pub mod pull;
pub mod push;
pub mod transfer;

use std::collections::HashMap;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

pub use error::{RemoteError, Result};

use crate::remote::client::Client;
use crate::remote::credentials::Credentials;
use crate::store::Store;
use crate::store::catalog::Catalog;
use crate::store::records::RemoteRecord;

/// A configured remote, connected.
pub struct Remote {
    pub record: RemoteRecord,
    pub client: Client,
}

/// Parse `s3://BUCKET[/PREFIX]` into (bucket, prefix).
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let bad = |reason: &str| RemoteError::BadConfig {
        what: format!("remote URL {url:?}"),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("must start with s3:// (s3://BUCKET[/PREFIX])"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(bad(
            "the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.', starting with a letter or digit",
        ));
    }
    if prefix.starts_with('/') {
        return Err(bad("the prefix has an empty component"));
    }
    let prefix = prefix.trim_end_matches('/');
    if prefix
        .split('/')
        .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
    {
        return Err(bad("the prefix has an empty, '.' or '..' component"));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Record a remote (nothing is sent: the first push writes the format marker).
pub fn add(store: &Store, rec: &RemoteRecord) -> Result<()> {
    crate::store::name::validate(&rec.name)?;
    if !(rec.endpoint.starts_with("http://") || rec.endpoint.starts_with("https://")) {
        return Err(RemoteError::BadConfig {
            what: format!("endpoint {:?}", rec.endpoint),
            reason: "must be an http:// or https:// URL".into(),
        });
    }
    let authority = rec.endpoint.split_once("://").map_or("", |(_, r)| r);
    if authority.split('/').next().is_some_and(|a| a.contains('@')) {
        return Err(RemoteError::BadConfig {
            what: "the endpoint".into(),
            reason: "must not carry credentials (user@host): use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --credentials-file".into(),
        });
    }
    if let Some(p) = &rec.credentials_file {
        credentials::from_file(p)?;
    }
    let db = Catalog::open(store)?;
    if db.remote(&rec.name)?.is_some() {
        return Err(RemoteError::Exists(rec.name.clone()));
    }
    db.put_remote(rec)?;
    Ok(())
}

/// Forget a remote (nothing on it is touched).
pub fn remove(store: &Store, name: &str) -> Result<()> {
    let db = Catalog::open(store)?;
    if db.remote(name)?.is_none() {
        return Err(RemoteError::NotConfigured(name.to_string()));
    }
    db.remove_remote(name)?;
    Ok(())
}

/// Every configured remote.
pub fn list(store: &Store) -> Result<Vec<RemoteRecord>> {
    Ok(Catalog::open_read_only(store)?.remotes()?)
}

impl Remote {
    /// Connect to the configured remote `name`.
    pub fn open(store: &Store, name: &str) -> Result<Remote> {
        let record = Catalog::open_read_only(store)?
            .remote(name)?
            .ok_or_else(|| RemoteError::NotConfigured(name.to_string()))?;
        Remote::connect(record)
    }

    /// Connect to a remote described by `record`.
    pub fn connect(record: RemoteRecord) -> Result<Remote> {
        let creds = Credentials::for_remote(&record)?;
        let client = Client::connect(&record, &creds)?;
        Ok(Remote { record, client })
    }

    /// Write the format marker if there is none; refuse a remote of another
    /// format.
    pub async fn ensure_format(&self) -> Result<()> {
        match self.client.get(layout::FORMAT_KEY).await? {
            None => {
                self.client
                    .put(
                        layout::FORMAT_KEY,
                        Bytes::from_static(layout::FORMAT_TEXT.as_bytes()),
                    )
                    .await
            }
            Some(b) if b == layout::FORMAT_TEXT.as_bytes() => Ok(()),
            Some(b) => Err(RemoteError::BadDocument {
                remote: self.record.name.clone(),
                key: layout::FORMAT_KEY.into(),
                reason: format!(
                    "remote format {:?} is not the one this vzstore writes",
                    String::from_utf8_lossy(&b[..b.len().min(40)])
                ),
            }),
        }
    }
}

/// One template version or container on a remote, as `remote ls` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    pub templates: Vec<layout::TemplateHeader>,
    pub containers: Vec<layout::ContainerHeader>,
    /// Documents that are not valid (each error names its key).
    pub invalid: Vec<String>,
    /// Objects on the remote and their stored (compressed) bytes.
    pub objects: u64,
    pub stored_bytes: u64,
}

/// What the remote holds: every document's header, and the objects' total.
pub fn ls(remote: &Remote) -> Result<Listing> {
    let c = &remote.client;
    c.block_on(async {
        let mut invalid = Vec::new();
        let mut templates = Vec::new();
        for d in documents(remote, "templates/", layout::decode_template).await? {
            match d {
                Ok((h, _)) => templates.push(h),
                Err(e) => invalid.push(e.to_string()),
            }
        }
        let mut containers = Vec::new();
        for d in documents(remote, "containers/", layout::decode_container).await? {
            match d {
                Ok((h, _)) => containers.push(h),
                Err(e) => invalid.push(e.to_string()),
            }
        }
        let objects = c.list("objects/").await?;
        let mut distinct: HashMap<crate::store::Hash, u64> = HashMap::new();
        for l in &objects {
            if let Some((h, _)) = layout::parse_object_key(&l.key) {
                distinct.insert(h, l.size);
            }
        }
        templates.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        Ok(Listing {
            templates,
            containers,
            invalid,
            objects: distinct.len() as u64,
            stored_bytes: distinct.values().sum(),
        })
    })
}

/// A document decoder of `layout` (remote name, key, bytes).
type Decoder<H> = fn(&str, &str, &[u8]) -> Result<(H, crate::store::manifest::Manifest)>;

/// A decoded document, or why it is not one.
pub(crate) type Document<H> = Result<(H, crate::store::manifest::Manifest)>;

/// Every document under `folder` (`templates/` or `containers/`), read in
/// parallel and decoded; one deleted meanwhile is left out; one that cannot
/// be decoded is given as its error (a request that fails is the whole
/// call's error).
pub(crate) async fn documents<H>(
    remote: &Remote,
    folder: &str,
    decode: Decoder<H>,
) -> Result<Vec<Document<H>>> {
    let c = &remote.client;
    let keys = c.list(folder).await?;
    futures::stream::iter(keys)
        .map(|l| async move {
            Ok::<_, RemoteError>(
                c.get(&l.key)
                    .await?
                    .map(|raw| decode(&remote.record.name, &l.key, &raw)),
            )
        })
        .buffered(16)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await
}

/// Remove a template version's document from the remote (its objects go at
/// the next `remote gc`, unless another document names them).
pub fn delete_template(remote: &Remote, name: &str, version: u32) -> Result<()> {
    let c = &remote.client;
    let key = layout::template_key(name, version);
    c.block_on(async {
        if c.get(&key).await?.is_none() {
            return Err(RemoteError::NotOnRemote {
                remote: remote.record.name.clone(),
                what: format!("template {name}@{version}"),
            });
        }
        c.delete(&key).await
    })
}

/// Remove a container's document from the remote.
pub fn delete_container(remote: &Remote, name: &str) -> Result<()> {
    let c = &remote.client;
    let key = layout::container_key(name);
    c.block_on(async {
        if c.get(&key).await?.is_none() {
            return Err(RemoteError::NotOnRemote {
                remote: remote.record.name.clone(),
                what: format!("container {name}"),
            });
        }
        c.delete(&key).await
    })
}
