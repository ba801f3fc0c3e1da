//! Lazy pull: the objects of a template pulled with `--lazy` are fetched one
//! at a time, on first open, by the FUSE daemon of a container based on it.
//! [`LazySource`] is the remote as a `store::fetch::ObjectSource`; the
//! daemon's object checker calls `store::fetch::fetch_one` with it when an
//! object is missing, which stages, syncs, hashes and publishes the bytes
//! like any fetched object. From then on the object is a local one.
//!
//! The kernel backend needs every object up front (its image holds small
//! files inline, and overlayfs opens objects itself): a kernel container of a
//! lazily pulled template is refused until a full pull.

use std::fs::File;

use crate::remote::Remote;
use crate::remote::error::RemoteError;
use crate::remote::layout;
use crate::remote::transfer::{self, RemoteObject};
use crate::store::error::Result;
use crate::store::fetch::ObjectSource;
use crate::store::hash::Hash;

/// A remote that objects are fetched from on demand.
pub struct LazySource {
    remote: Remote,
}

impl LazySource {
    pub fn new(remote: Remote) -> LazySource {
        LazySource { remote }
    }
}

impl ObjectSource for LazySource {
    fn describe(&self) -> String {
        format!("remote {}", self.remote.record.name)
    }

    fn fetch_into(&self, hash: &Hash, size: u64, out: &File) -> Result<bool> {
        let c = &self.remote.client;
        let r = c.block_on(async {
            // The compressed form is the usual one; the raw one is the rest.
            for compressed in [true, false] {
                let key = layout::object_key(hash, compressed);
                if let Some(body) = c.get(&key).await? {
                    let o = RemoteObject {
                        compressed,
                        stored_size: body.len() as u64,
                    };
                    transfer::write_checked(out, size, o, &body).map_err(|e| {
                        RemoteError::BadObject {
                            remote: c.name().to_string(),
                            key,
                            hash: *hash,
                            reason: e.to_string(),
                        }
                    })?;
                    return Ok::<_, RemoteError>(true);
                }
            }
            Ok(false)
        });
        match r {
            Ok(found) => Ok(found),
            Err(RemoteError::Store(e)) => Err(e),
            Err(e) => {
                log::warn!("lazy fetch of object {hash}: {e}");
                Ok(false)
            }
        }
    }
}
