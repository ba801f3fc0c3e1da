//! Moving objects between the store and a remote, in parallel:
//! - [`index`]: which of some objects a remote holds, by listing only the
//!   fan-out folders those objects fall in (one request per 1,000 keys, not
//!   one per object);
//! - [`upload`]: local objects, re-hashed as they are read (a damaged local
//!   object is never sent), zstd-compressed when that saves bytes;
//! - [`download`]: remote objects into a write session (pinned against gc),
//!   decompressed, bounded by the size the manifest gives, hashed, and
//!   published only if they hash to their name; published in batches, so a
//!   killed pull keeps what it fetched and a rerun moves only the rest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::ingest::Progress;
use crate::remote::client::Client;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout::{self, WIRE_LEVEL};
use crate::store::error::IoContext;
use crate::store::hash::Hash;
use crate::store::session::Session;
use crate::store::{Error, Store, objects};

mod download;
mod upload;

pub use download::{download, fetch_missing, write_checked};
pub use upload::upload;

/// Requests in flight at once.
const PARALLEL: usize = 16;
/// Objects up to this size move whole in memory; larger ones stream.
const WHOLE_MAX: u64 = 16 << 20;
/// Part size of streamed uploads.
const PART: usize = 16 << 20;
/// A pull publishes what it has fetched each time this many bytes are staged.
const PUBLISH_EVERY: u64 = 64 << 20;

/// What a push or pull moved, for the summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Moved {
    /// Objects sent or fetched, and their bytes (uncompressed).
    pub objects_moved: u64,
    pub bytes_moved: u64,
    /// Bytes of those objects on the wire (compressed where that saved).
    pub wire_bytes: u64,
    /// Objects the other side had already, and their bytes.
    pub objects_skipped: u64,
    pub bytes_skipped: u64,
}

/// Where a remote object is: whether it is stored compressed, and its size
/// there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    pub compressed: bool,
    pub stored_size: u64,
}

/// Which of `hashes` the remote holds. Few objects: the fan-out folders
/// they fall in are listed; many (spread over more than 16 folders): the
/// `objects/` listing is read in up to 16 ranges at once, by the first hex
/// digit of the hash (some 16 requests for ten thousand objects, not 256).
pub async fn index(client: &Client, hashes: &[Hash]) -> Result<HashMap<Hash, RemoteObject>> {
    let mut folders: Vec<u8> = hashes.iter().map(|h| h.0[0]).collect();
    folders.sort_unstable();
    folders.dedup();
    let lists: Vec<Vec<crate::remote::client::Listed>> = if folders.len() <= 16 {
        futures::stream::iter(folders)
            .map(|b| async move { client.list(&layout::object_folder(b)).await })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?
    } else {
        let mut digits: Vec<u8> = folders.iter().map(|b| b >> 4).collect();
        digits.dedup();
        futures::stream::iter(digits)
            .map(|d| async move {
                let after = format!("objects/{d:x}");
                let before = (d < 15).then(|| format!("objects/{:x}", d + 1));
                client
                    .list_range("objects/", &after, before.as_deref())
                    .await
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?
    };
    let mut out = HashMap::new();
    for l in lists.into_iter().flatten() {
        if let Some((h, compressed)) = layout::parse_object_key(&l.key) {
            // Both forms present (two pushes that chose differently): either
            // serves; prefer the smaller.
            let o = RemoteObject {
                compressed,
                stored_size: l.size,
            };
            out.entry(h)
                .and_modify(|e: &mut RemoteObject| {
                    if o.stored_size < e.stored_size {
                        *e = o;
                    }
                })
                .or_insert(o);
        }
    }
    Ok(out)
}

fn join_error(client: &Client, e: tokio::task::JoinError) -> RemoteError {
    RemoteError::Request {
        remote: client.name().to_string(),
        op: "worker",
        key: String::new(),
        detail: e.to_string(),
    }
}

/// Where the remote holds each of `wanted`; a document (`what`) naming
/// objects the remote lacks is refused, naming the first.
pub async fn locate(
    client: &Client,
    what: &str,
    wanted: &[(Hash, u64)],
) -> Result<HashMap<Hash, RemoteObject>> {
    let hashes: Vec<Hash> = wanted.iter().map(|(h, _)| *h).collect();
    let at = index(client, &hashes).await?;
    let absent: Vec<&Hash> = hashes.iter().filter(|h| !at.contains_key(h)).collect();
    match absent.first() {
        Some(first) => Err(RemoteError::MissingOnRemote {
            remote: client.name().to_string(),
            what: what.to_string(),
            count: absent.len(),
            first: **first,
        }),
        None => Ok(at),
    }
}

/// Each object once (the first size given for it), sorted by hash.
pub fn dedup_wanted(wanted: impl Iterator<Item = (Hash, u64)>) -> Vec<(Hash, u64)> {
    let mut seen: HashMap<Hash, u64> = HashMap::new();
    for (h, s) in wanted {
        seen.entry(h).or_insert(s);
    }
    let mut v: Vec<(Hash, u64)> = seen.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests;
