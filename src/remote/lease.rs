//! Leases: how pushes and `remote gc` on different nodes keep out of each
//! other's way on a store with no locks and (Garage) no conditional writes.
//!
//! A lease is an object `locks/<kind>-<host>-<pid>-<ns>`, written by its
//! holder, rewritten every [`REFRESH`] while it works, and deleted at the end.
//! A lease not rewritten for [`STALE`] belongs to a dead process and is
//! ignored (and removed by gc).
//!
//! Taking one: write your own, *then* list `locks/`. Pushes exclude gc, gc
//! excludes pushes (pushes do not exclude each other). If the list shows a
//! fresh lease of the excluding kind, delete yours and back off. Because each
//! side writes before it lists, and the store reads its own writes (S3 and
//! Garage list what was written before), of two that start at once at least
//! one sees the other: either writes its lease before the other lists. So a
//! gc never runs while a push that could rely on an object exists: a push
//! takes its lease before it asks which objects the remote has, and keeps it
//! until its document is written.
//!
//! A push waits for a running gc (up to [`PUSH_WAIT`]); a gc that meets a push
//! gives up at once and says so.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::remote::client::Client;
use crate::remote::error::{RemoteError, Result};
use crate::remote::layout::hostname;

/// How often a holder rewrites its lease.
pub const REFRESH: Duration = Duration::from_secs(60);
/// A lease older than this is a dead holder's.
pub const STALE: Duration = Duration::from_secs(15 * 60);
/// How long a push waits for a running gc.
const PUSH_WAIT: Duration = Duration::from_secs(300);

/// What a lease is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    Push,
    Gc,
}

impl LeaseKind {
    fn word(self) -> &'static str {
        match self {
            LeaseKind::Push => "push",
            LeaseKind::Gc => "gc",
        }
    }

    fn excluded_by(self) -> &'static str {
        match self {
            LeaseKind::Push => "gc",
            LeaseKind::Gc => "push",
        }
    }
}

/// A held lease; [`Lease::release`] it (a dropped one stops refreshing and
/// goes stale).
pub struct Lease {
    key: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

fn now_secs() -> i64 {
    crate::store::time::now_secs()
}

impl Lease {
    /// Take a lease of `kind` (see the module documentation).
    pub async fn take(client: &Client, kind: LeaseKind) -> Result<Lease> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let key = format!(
                "locks/{}-{}-{}-{nanos}",
                kind.word(),
                hostname(),
                std::process::id()
            );
            let body = Bytes::from(format!(
                "{{\"kind\":\"{}\",\"host\":{:?},\"pid\":{},\"since\":{}}}\n",
                kind.word(),
                hostname(),
                std::process::id(),
                now_secs()
            ));
            client.put(&key, body.clone()).await?;
            let blockers = Self::blockers(client, kind, &key).await;
            let blockers = match blockers {
                Ok(b) => b,
                Err(e) => {
                    let _ = client.delete(&key).await;
                    return Err(e);
                }
            };
            if blockers.is_empty() {
                let heartbeat = client.spawn_refresh(&key, body, REFRESH);
                return Ok(Lease { key, heartbeat });
            }
            client.delete(&key).await?;
            let busy = || RemoteError::Busy {
                remote: client.name().to_string(),
                detail: format!(
                    "a {} is running ({})",
                    kind.excluded_by(),
                    blockers.join(", ")
                ),
            };
            if kind == LeaseKind::Gc || started.elapsed() + pause > PUSH_WAIT {
                return Err(busy());
            }
            log::info!("{}; waiting {pause:?}", busy());
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Fresh leases of the kind that excludes `kind`, other than `own`.
    async fn blockers(client: &Client, kind: LeaseKind, own: &str) -> Result<Vec<String>> {
        let prefix = format!("locks/{}-", kind.excluded_by());
        Ok(client
            .list("locks/")
            .await?
            .into_iter()
            .filter(|l| l.key != own && l.key.starts_with(&prefix) && !is_dead(l))
            .map(|l| l.key.trim_start_matches("locks/").to_string())
            .collect())
    }

    /// Leases whose holders are gone: not rewritten for [`STALE`], or held
    /// by a process of this host that no longer runs.
    pub async fn stale(client: &Client) -> Result<Vec<String>> {
        Ok(client
            .list("locks/")
            .await?
            .into_iter()
            .filter(is_dead)
            .map(|l| l.key)
            .collect())
    }

    /// Stop refreshing and delete the lease.
    pub async fn release(self, client: &Client) -> Result<()> {
        self.heartbeat.abort();
        client.delete(&self.key).await
    }
}

/// Whether a lease's holder is gone (see [`Lease::stale`]). Keys are
/// `locks/<kind>-<host>-<pid>-<ns>` (the host may hold '-').
fn is_dead(l: &crate::remote::client::Listed) -> bool {
    if now_secs() - l.modified >= STALE.as_secs() as i64 {
        return true;
    }
    let name = l.key.trim_start_matches("locks/");
    let mut parts = name.rsplitn(3, '-');
    let (_ns, pid, rest) = (parts.next(), parts.next(), parts.next());
    let host = rest.and_then(|r| r.split_once('-')).map(|(_, h)| h);
    match (host, pid.and_then(|p| p.parse::<i32>().ok())) {
        (Some(h), Some(pid)) if h == hostname() => !crate::store::lock::process_alive(pid),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_push_and_a_gc_exclude_each_other_and_pushes_share() {
        let c = Client::over(
            "mem",
            "memory",
            Arc::new(object_store::memory::InMemory::new()),
            "",
        )
        .expect("client");
        c.block_on(async {
            let p1 = Lease::take(&c, LeaseKind::Push).await?;
            let p2 = Lease::take(&c, LeaseKind::Push).await?;
            let e = Lease::take(&c, LeaseKind::Gc)
                .await
                .err()
                .expect("gc refused");
            assert!(matches!(e, RemoteError::Busy { .. }), "{e}");
            // The refused gc left no lease behind.
            assert_eq!(c.list("locks/").await?.len(), 2);
            p1.release(&c).await?;
            p2.release(&c).await?;
            let g = Lease::take(&c, LeaseKind::Gc).await?;
            assert_eq!(c.list("locks/").await?.len(), 1);
            g.release(&c).await?;
            assert!(c.list("locks/").await?.is_empty());
            // The lease of a process of this host that died does not block.
            let dead = format!("locks/push-{}-{}-1", hostname(), i32::MAX - 1);
            c.put(&dead, Bytes::from_static(b"{}")).await?;
            let g = Lease::take(&c, LeaseKind::Gc).await?;
            assert_eq!(Lease::stale(&c).await?, vec![dead]);
            g.release(&c).await?;
            Ok::<_, RemoteError>(())
        })
        .expect("leases");
    }
}
