//! The S3 client: a blocking face over the `object_store` crate (its own
//! retries with exponential backoff, path-style requests, SigV4), with keys
//! relative to the remote's prefix and every error mapped to a
//! [`RemoteError`] naming the remote and the key.
//!
//! The same [`Client`] runs over any `ObjectStore`: S3 in use, the crate's
//! in-memory store in unit tests (one test suite for both).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use crate::remote::credentials::Credentials;
use crate::remote::error::{RemoteError, Result};
use crate::store::records::RemoteRecord;

/// One object as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The key, relative to the remote's prefix.
    pub key: String,
    pub size: u64,
    /// Last modification, seconds since the epoch.
    pub modified: i64,
}

/// A connection to one remote.
pub struct Client {
    name: String,
    endpoint: String,
    s3: Arc<dyn ObjectStore>,
    /// `PREFIX/` or "".
    prefix: String,
    rt: tokio::runtime::Runtime,
}

/// How long requests are retried before a remote counts as unreachable
/// (`VZSTORE_REMOTE_RETRY_SECS`, default 30).
fn retry_window() -> Duration {
    let secs = std::env::var("VZSTORE_REMOTE_RETRY_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

impl Client {
    /// Connect to the remote `rec` with `creds`. Nothing is sent yet.
    pub fn connect(rec: &RemoteRecord, creds: &Credentials) -> Result<Client> {
        let window = retry_window();
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(4),
                base: 2.0,
            },
            // The window governs, not a count: backoff doubles to 4 s, so 30 s
            // is some 12 attempts.
            max_retries: if window.is_zero() { 0 } else { 1000 },
            retry_timeout: window,
        };
        let options = ClientOptions::new()
            .with_allow_http(rec.endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(600));
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&rec.bucket)
            .with_region(&rec.region)
            .with_endpoint(&rec.endpoint)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(&creds.access_key_id)
            .with_secret_access_key(&creds.secret_access_key)
            .with_retry(retry)
            .with_client_options(options);
        if let Some(t) = &creds.session_token {
            b = b.with_token(t);
        }
        let s3 = b.build().map_err(|e| RemoteError::BadConfig {
            what: format!("remote {}", rec.name),
            reason: e.to_string(),
        })?;
        Client::over(&rec.name, &rec.endpoint, Arc::new(s3), &rec.prefix)
    }

    /// A client over any object store (tests use the in-memory one).
    pub fn over(
        name: &str,
        endpoint: &str,
        s3: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<Client> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vzstore-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::BadConfig {
                what: format!("remote {name}"),
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        let prefix = prefix.trim_matches('/');
        Ok(Client {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            s3,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            rt,
        })
    }

    /// The remote's name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run async work to completion on the client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn key(&self, rel: &str) -> Key {
        Key::from(format!("{}{rel}", self.prefix))
    }

    /// The object at `rel`, `None` if there is none.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        let r = async { self.s3.get(&self.key(rel)).await?.bytes().await }.await;
        match r {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET", rel, e)),
        }
    }

    /// A stream of the object's bytes, `None` if there is none.
    pub async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<Option<futures::stream::BoxStream<'static, Result<Bytes>>>> {
        match self.s3.get(&self.key(rel)).await {
            Ok(r) => {
                let (name, endpoint, key) =
                    (self.name.clone(), self.endpoint.clone(), rel.to_string());
                Ok(Some(Box::pin(r.into_stream().map_err(move |e| {
                    map_error(&name, &endpoint, "GET", &key, e)
                }))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET", rel, e)),
        }
    }

    /// Write the object at `rel` (replacing any).
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        self.s3
            .put(&self.key(rel), data.into())
            .await
            .map(|_| ())
            .map_err(|e| self.error("PUT", rel, e))
    }

    /// Write a large object at `rel` in parts, from `parts` (each at least
    /// 5 MiB but the last).
    pub async fn put_parts(
        &self,
        rel: &str,
        mut parts: impl futures::Stream<Item = Result<Bytes>> + Unpin,
    ) -> Result<()> {
        use futures::StreamExt;
        let key = self.key(rel);
        let mut up = self
            .s3
            .put_multipart(&key)
            .await
            .map_err(|e| self.error("PUT", rel, e))?;
        let sent = async {
            while let Some(part) = parts.next().await {
                up.put_part(part?.into())
                    .await
                    .map_err(|e| self.error("PUT part", rel, e))?;
            }
            up.complete()
                .await
                .map_err(|e| self.error("PUT complete", rel, e))
        }
        .await;
        if sent.is_err()
            && let Err(e) = up.abort().await
        {
            log::warn!("remote {}: aborting the upload of {rel}: {e}", self.name);
        }
        sent.map(|_| ())
    }

    /// Rewrite `rel` with `body` every `every` until the returned task is
    /// aborted (a lease's heartbeat).
    pub fn spawn_refresh(
        &self,
        rel: &str,
        body: Bytes,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let (s3, key, name) = (self.s3.clone(), self.key(rel), self.name.clone());
        self.rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = s3.put(&key, body.clone().into()).await {
                    log::warn!("remote {name}: refreshing {key}: {e}");
                }
            }
        })
    }

    /// Every object whose key starts with `rel` (a folder: ends with `/`).
    pub async fn list(&self, rel: &str) -> Result<Vec<Listed>> {
        let prefix = self.key(rel.trim_end_matches('/'));
        let metas: Vec<object_store::ObjectMeta> = self
            .s3
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error("LIST", rel, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let full = m.location.to_string();
                let key = full.strip_prefix(&self.prefix)?.to_string();
                Some(Listed {
                    key,
                    size: m.size,
                    modified: m.last_modified.timestamp(),
                })
            })
            .collect())
    }

    /// The objects under folder `rel` whose keys sort after `after` and
    /// before `before` (all of the rest when `None`): one listing that starts
    /// at `after` (S3 `start-after`) and stops reading pages at `before`, so
    /// parallel ranges split a large folder.
    pub async fn list_range(
        &self,
        rel: &str,
        after: &str,
        before: Option<&str>,
    ) -> Result<Vec<Listed>> {
        use futures::StreamExt;
        let prefix = self.key(rel.trim_end_matches('/'));
        let offset = self.key(after);
        let end = before.map(|b| format!("{}{b}", self.prefix));
        let mut stream = self.s3.list_with_offset(Some(&prefix), &offset);
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            let m = m.map_err(|e| self.error("LIST", rel, e))?;
            let full = m.location.to_string();
            if end.as_deref().is_some_and(|e| full.as_str() >= e) {
                break;
            }
            if let Some(key) = full.strip_prefix(&self.prefix) {
                out.push(Listed {
                    key: key.to_string(),
                    size: m.size,
                    modified: m.last_modified.timestamp(),
                });
            }
        }
        Ok(out)
    }

    /// Remove the object at `rel` (absent is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.s3.delete(&self.key(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", rel, e)),
        }
    }

    fn error(&self, op: &'static str, rel: &str, e: object_store::Error) -> RemoteError {
        map_error(&self.name, &self.endpoint, op, rel, e)
    }
}

/// One mapping from the crate's errors to ours.
fn map_error(
    remote: &str,
    endpoint: &str,
    op: &'static str,
    key: &str,
    e: object_store::Error,
) -> RemoteError {
    let detail = e.to_string();
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => RemoteError::AccessDenied {
            remote: remote.to_string(),
            key: key.to_string(),
            detail,
        },
        _ if is_unreachable(&detail) => RemoteError::Unreachable {
            remote: remote.to_string(),
            endpoint: endpoint.to_string(),
            detail,
        },
        _ if detail.contains("403")
            || detail.contains("AccessDenied")
            || detail.contains("InvalidAccessKeyId") =>
        {
            RemoteError::AccessDenied {
                remote: remote.to_string(),
                key: key.to_string(),
                detail,
            }
        }
        _ => RemoteError::Request {
            remote: remote.to_string(),
            op,
            key: key.to_string(),
            detail,
        },
    }
}

/// Whether a failure means no server answered (refused, timed out, no route,
/// name not resolved).
fn is_unreachable(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "error sending request",
        "connection refused",
        "connect error",
        "tcp connect",
        "dns error",
        "timed out",
        "no route to host",
        "connection reset",
    ]
    .iter()
    .any(|s| d.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Client {
        Client::over(
            "mem",
            "memory",
            Arc::new(object_store::memory::InMemory::new()),
            "pre/fix/",
        )
        .expect("client")
    }

    #[test]
    fn keys_are_relative_to_the_prefix() {
        let c = memory();
        c.block_on(async {
            c.put("objects/ab/x", Bytes::from_static(b"one")).await?;
            c.put("templates/t/1", Bytes::from_static(b"two")).await?;
            let l = c.list("objects/").await?;
            assert_eq!(l.len(), 1);
            assert_eq!(l[0].key, "objects/ab/x");
            assert_eq!(l[0].size, 3);
            assert_eq!(c.get("templates/t/1").await?.as_deref(), Some(&b"two"[..]));
            assert_eq!(c.get("templates/t/2").await?, None);
            c.delete("objects/ab/x").await?;
            c.delete("objects/ab/x").await?;
            assert!(c.list("objects/").await?.is_empty());
            Ok::<_, RemoteError>(())
        })
        .expect("round trip");
    }

    #[test]
    fn refused_connections_are_unreachable_errors() {
        let e = map_error(
            "r",
            "http://127.0.0.1:1",
            "GET",
            "k",
            object_store::Error::Generic {
                store: "S3",
                source: "error sending request for url: Connection refused".into(),
            },
        );
        assert!(matches!(e, RemoteError::Unreachable { .. }), "{e}");
    }
}
