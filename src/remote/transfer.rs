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

/// Send the local objects `wanted` (hash -> size) that `present` lacks.
pub async fn upload(
    client: &Client,
    store: &Store,
    wanted: &[(Hash, u64)],
    present: &HashMap<Hash, RemoteObject>,
    extra: &HashMap<Hash, PathBuf>,
    progress: &dyn Progress,
) -> Result<Moved> {
    let mut moved = Moved::default();
    let mut todo = Vec::new();
    for &(h, size) in wanted {
        if present.contains_key(&h) {
            moved.objects_skipped += 1;
            moved.bytes_skipped += size;
        } else {
            todo.push((h, size));
        }
    }
    progress.start(todo.iter().map(|(_, s)| s).sum(), todo.len() as u64);
    // Largest first: the long transfers start early and overlap the rest.
    todo.sort_by_key(|t| std::cmp::Reverse(t.1));
    let wire = AtomicU64::new(0);
    futures::stream::iter(todo.iter().copied())
        .map(|(h, size)| {
            let wire = &wire;
            async move {
                let n = upload_one(client, store, h, size, extra.get(&h)).await?;
                wire.fetch_add(n, Ordering::Relaxed);
                progress.advance(size);
                Ok::<_, RemoteError>(())
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await?;
    moved.objects_moved = todo.len() as u64;
    moved.bytes_moved = todo.iter().map(|(_, s)| s).sum();
    moved.wire_bytes = wire.into_inner();
    Ok(moved)
}

/// Send one object; returns the bytes sent. A failed request is tried again
/// (twice, after a pause) unless the object has appeared meanwhile: another
/// node sending the same content can make Garage drop this node's multipart
/// upload of that key, and then the object is there all the same. A local
/// problem (an object damaged here) is not retried.
async fn upload_one(
    client: &Client,
    store: &Store,
    h: Hash,
    size: u64,
    from: Option<&PathBuf>,
) -> Result<u64> {
    let mut attempt = 0;
    loop {
        let from = from.cloned();
        let r = if size <= WHOLE_MAX {
            upload_whole(client, store, h, size, from).await
        } else {
            upload_streamed(client, store, h, size, from).await
        };
        let e = match r {
            Ok(n) => return Ok(n),
            Err(e @ RemoteError::Store(_)) => return Err(e),
            Err(e) => e,
        };
        if index(client, &[h]).await?.contains_key(&h) {
            log::info!("object {h}: sent by another node meanwhile ({e})");
            return Ok(0);
        }
        attempt += 1;
        if attempt > 2 {
            return Err(e);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
    }
}

/// Open the bytes of object `h`: the store's object, or the file `from`
/// (a container's own file, not an object here).
fn open_local(
    store: &Store,
    h: &Hash,
    from: Option<&PathBuf>,
) -> crate::store::Result<(File, PathBuf)> {
    match from {
        Some(p) => Ok((File::open(p).at(p)?, p.clone())),
        None => Ok((objects::open(store, h)?, store.object_path(h))),
    }
}

/// Read a local object whole and check it: `size` bytes hashing to `h`.
fn read_checked(
    store: &Store,
    h: &Hash,
    size: u64,
    from: Option<&PathBuf>,
) -> crate::store::Result<Vec<u8>> {
    let (mut f, path) = open_local(store, h, from)?;
    let mut buf = Vec::with_capacity(size as usize);
    (&mut f).take(size + 1).read_to_end(&mut buf).at(&path)?;
    if buf.len() as u64 != size {
        return Err(Error::ObjectSize {
            hash: *h,
            expected: size,
            found: buf.len() as u64,
        });
    }
    if Hash::of(&buf) != *h {
        return Err(Error::CorruptObject(*h));
    }
    Ok(buf)
}

/// Send one object of at most [`WHOLE_MAX`] bytes; returns the bytes sent.
async fn upload_whole(
    client: &Client,
    store: &Store,
    h: Hash,
    size: u64,
    from: Option<PathBuf>,
) -> Result<u64> {
    let st = store.clone();
    let (body, compressed) = tokio::task::spawn_blocking(move || {
        let raw = read_checked(&st, &h, size, from.as_ref())?;
        let z = zstd::bulk::compress(&raw, WIRE_LEVEL).unwrap_or_default();
        Ok::<_, Error>(
            if !z.is_empty() && layout::worth_compressing(size, z.len() as u64) {
                (Bytes::from(z), true)
            } else {
                (Bytes::from(raw), false)
            },
        )
    })
    .await
    .map_err(|e| join_error(client, e))??;
    let n = body.len() as u64;
    // Test builds: `remote-put=sleep(MS)` slows each upload, `return` fails it.
    crate::store::fsutil::failpoint_io("remote-put").map_err(|e| RemoteError::Request {
        remote: client.name().to_string(),
        op: "PUT",
        key: layout::object_key(&h, compressed),
        detail: e.to_string(),
    })?;
    client
        .put(&layout::object_key(&h, compressed), body)
        .await?;
    Ok(n)
}

/// Send one large object in parts, compressed if its first MiB compresses,
/// hashed as it is read: a mismatch aborts the upload.
async fn upload_streamed(
    client: &Client,
    store: &Store,
    h: Hash,
    size: u64,
    from: Option<PathBuf>,
) -> Result<u64> {
    let (file, path) = open_local(store, &h, from.as_ref())?;
    let mut sample = Vec::with_capacity(1 << 20);
    {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; 1 << 20];
        let n = file.read_at(&mut buf, 0).at(&path)?;
        sample.extend_from_slice(&buf[..n]);
    }
    let n = sample.len();
    let z = zstd::bulk::compress(&sample, WIRE_LEVEL).unwrap_or_default();
    let compressed = !z.is_empty() && layout::worth_compressing(n as u64, z.len() as u64);
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes>>(2);
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let verified = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (counter, done) = (sent.clone(), verified.clone());
    let parts = Parts {
        file,
        path,
        h,
        size,
        compressed,
        sent: counter,
        verified: done,
    };
    let producer = std::thread::spawn(move || parts.send_to(tx));
    let key = layout::object_key(&h, compressed);
    // The upload completes only if the producer checked every byte and said
    // so before its last part: a producer that stopped early (an error it
    // could not send, a panic) ends the stream with an error instead, so the
    // multipart upload is aborted, never completed short.
    let (name, k) = (client.name().to_string(), key.clone());
    let end = futures::stream::once(async move {
        (!verified.load(Ordering::SeqCst)).then(|| {
            Err(RemoteError::Request {
                remote: name,
                op: "PUT",
                key: k,
                detail: "the local object's reader stopped before its end".into(),
            })
        })
    })
    .filter_map(|x| async move { x });
    let r = client.put_parts(&key, Box::pin(rx.chain(end))).await;
    // The producer ends once the channel is dropped (by completion or abort).
    let produced = producer.join();
    r?;
    if let Ok(Err(e)) = produced {
        return Err(e);
    }
    Ok(sent.load(Ordering::Relaxed))
}

/// The producer of [`upload_streamed`]: parts of at least [`PART`] bytes; an
/// error (read failure, wrong hash or size) is sent as the last item.
struct Parts {
    file: File,
    path: PathBuf,
    h: Hash,
    size: u64,
    compressed: bool,
    /// Bytes handed to the upload.
    sent: std::sync::Arc<AtomicU64>,
    /// Set once every byte was read and checked, before the last part.
    verified: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Parts {
    fn send_to(self, mut tx: futures::channel::mpsc::Sender<Result<Bytes>>) -> Result<()> {
        let Parts {
            mut file,
            path,
            h,
            size,
            compressed,
            sent,
            verified,
        } = self;
        let mut send = |b: Result<Bytes>| {
            futures::executor::block_on(futures::SinkExt::send(&mut tx, b)).is_ok()
        };
        let mut hasher = blake3::Hasher::new();
        let mut total = 0u64;
        let mut enc = if compressed {
            Some(
                zstd::stream::write::Encoder::new(Vec::with_capacity(PART), WIRE_LEVEL)
                    .at(&path)?,
            )
        } else {
            None
        };
        let mut plain = Vec::with_capacity(PART);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = RemoteError::from(Error::Io {
                        path: path.clone(),
                        err: e,
                    });
                    send(Err(err));
                    return Ok(());
                }
            };
            total += n as u64;
            hasher.update(&buf[..n]);
            let out = match &mut enc {
                Some(e) => {
                    e.write_all(&buf[..n]).at(&path)?;
                    e.get_mut()
                }
                None => {
                    plain.extend_from_slice(&buf[..n]);
                    &mut plain
                }
            };
            if out.len() >= PART {
                let part = Bytes::from(std::mem::replace(out, Vec::with_capacity(PART)));
                sent.fetch_add(part.len() as u64, Ordering::Relaxed);
                if !send(Ok(part)) {
                    return Ok(());
                }
            }
        }
        let rest = match enc {
            Some(e) => e.finish().at(&path)?,
            None => plain,
        };
        if total != size || Hash::from(hasher.finalize()) != h {
            let err = if total != size {
                Error::ObjectSize {
                    hash: h,
                    expected: size,
                    found: total,
                }
            } else {
                Error::CorruptObject(h)
            };
            send(Err(err.into()));
            return Ok(());
        }
        sent.fetch_add(rest.len() as u64, Ordering::Relaxed);
        verified.store(true, Ordering::SeqCst);
        send(Ok(Bytes::from(rest)));
        Ok(())
    }
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

/// Fetch `missing` (objects the store lacks) from the remote through
/// `session`, after checking that the remote holds every one ([`locate`]):
/// nothing moves for a document that names absent objects.
pub async fn fetch_missing(
    client: &Client,
    session: &Session,
    what: &str,
    missing: &[(Hash, u64)],
    progress: &dyn Progress,
) -> Result<Moved> {
    let at = locate(client, what, missing).await?;
    download(client, session, missing, &at, progress).await
}

/// Fetch `wanted` (hash -> size, each held by the remote as `at` says) into
/// the store through `session`. Every object is checked before it is staged
/// for publishing; a wrong one fails the whole fetch, naming it.
pub async fn download(
    client: &Client,
    session: &Session,
    wanted: &[(Hash, u64)],
    at: &HashMap<Hash, RemoteObject>,
    progress: &dyn Progress,
) -> Result<Moved> {
    progress.start(wanted.iter().map(|(_, s)| s).sum(), wanted.len() as u64);
    let wire = AtomicU64::new(0);
    let unpublished = AtomicU64::new(0);
    let publishing = tokio::sync::Mutex::new(());
    let mut todo = wanted.to_vec();
    todo.sort_by_key(|t| std::cmp::Reverse(t.1));
    futures::stream::iter(todo.iter().copied())
        .map(|(h, size)| {
            let (wire, unpublished, publishing) = (&wire, &unpublished, &publishing);
            async move {
                let o = at
                    .get(&h)
                    .copied()
                    .ok_or_else(|| RemoteError::MissingOnRemote {
                        remote: client.name().to_string(),
                        what: "the document".into(),
                        count: 1,
                        first: h,
                    })?;
                fetch_one(client, session, h, size, o).await?;
                wire.fetch_add(o.stored_size, Ordering::Relaxed);
                progress.advance(size);
                if unpublished.fetch_add(size, Ordering::Relaxed) + size >= PUBLISH_EVERY {
                    let _one = publishing.lock().await;
                    if unpublished.load(Ordering::Relaxed) >= PUBLISH_EVERY {
                        unpublished.store(0, Ordering::Relaxed);
                        tokio::task::block_in_place(|| session.publish())?;
                    }
                }
                Ok::<_, RemoteError>(())
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await?;
    Ok(Moved {
        objects_moved: wanted.len() as u64,
        bytes_moved: wanted.iter().map(|(_, s)| s).sum(),
        wire_bytes: wire.into_inner(),
        ..Moved::default()
    })
}

/// Fetch one object into a staging file of `session` and stage it for
/// publishing if it is right.
async fn fetch_one(
    client: &Client,
    session: &Session,
    h: Hash,
    size: u64,
    o: RemoteObject,
) -> Result<()> {
    let key = layout::object_key(&h, o.compressed);
    crate::store::fsutil::failpoint_io("remote-get").map_err(|e| RemoteError::Request {
        remote: client.name().to_string(),
        op: "GET",
        key: key.clone(),
        detail: e.to_string(),
    })?;
    let (path, file) = session.stage_file()?;
    let bad = |reason: String| RemoteError::BadObject {
        remote: client.name().to_string(),
        key: key.clone(),
        hash: h,
        reason,
    };
    let missing = || RemoteError::MissingOnRemote {
        remote: client.name().to_string(),
        what: format!("object {h}"),
        count: 1,
        first: h,
    };
    let mut sink = Checked::new(file, size, o.compressed).at(&path)?;
    let r: Result<()> = async {
        if o.stored_size <= WHOLE_MAX {
            let body = client.get(&key).await?.ok_or_else(missing)?;
            sink = tokio::task::spawn_blocking(move || sink.write(&body).map(|()| sink))
                .await
                .map_err(|e| join_error(client, e))?
                .map_err(|e| bad(e.to_string()))?;
        } else {
            let mut s = client.get_stream(&key).await?.ok_or_else(missing)?;
            while let Some(chunk) = s.next().await {
                let chunk = chunk?;
                tokio::task::block_in_place(|| sink.write(&chunk))
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        let got = tokio::task::block_in_place(|| sink.finish()).map_err(|e| bad(e.to_string()))?;
        if got != h {
            return Err(bad(format!("its bytes hash to {got}")));
        }
        Ok(())
    }
    .await;
    match r {
        Ok(()) => {
            session.staged(path, h);
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

/// A staging file written through an optional zstd decoder, hashed, and
/// bounded by the object's size (a bomb stops at `size + 1` bytes).
struct Checked {
    out: Limited,
    dec: Option<zstd::stream::raw::Decoder<'static>>,
    /// Whether the zstd stream ended with a whole frame (the decoder's hint
    /// was 0 after the last input it consumed).
    frame_done: bool,
}

struct Limited {
    file: std::io::BufWriter<File>,
    hasher: blake3::Hasher,
    written: u64,
    size: u64,
}

/// Runs of zeros this long (and aligned) are left as holes, as the store
/// keeps them.
const HOLE: usize = 64 << 10;

impl Limited {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        if self.written + b.len() as u64 > self.size {
            return Err(std::io::Error::other(format!(
                "it has more than the {} bytes its manifest gives",
                self.size
            )));
        }
        self.hasher.update(b);
        let mut rest = b;
        while !rest.is_empty() {
            // Up to the next HOLE boundary of the file.
            let room = HOLE - (self.written % HOLE as u64) as usize;
            let (piece, tail) = rest.split_at(room.min(rest.len()));
            if piece.len() == HOLE && piece.iter().all(|&x| x == 0) {
                self.file.seek(SeekFrom::Current(HOLE as i64))?;
            } else {
                self.file.write_all(piece)?;
            }
            self.written += piece.len() as u64;
            rest = tail;
        }
        Ok(())
    }
}

impl Checked {
    fn new(file: File, size: u64, compressed: bool) -> std::io::Result<Checked> {
        let dec = if compressed {
            Some(zstd::stream::raw::Decoder::new()?)
        } else {
            None
        };
        Ok(Checked {
            out: Limited {
                file: std::io::BufWriter::with_capacity(1 << 20, file),
                hasher: blake3::Hasher::new(),
                written: 0,
                size,
            },
            dec,
            frame_done: false,
        })
    }

    fn write(&mut self, mut input: &[u8]) -> std::io::Result<()> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let Some(dec) = &mut self.dec else {
            return self.out.put(input);
        };
        let mut buf = vec![0u8; 256 << 10];
        while !input.is_empty() {
            let mut inb = InBuffer::around(input);
            let mut outb = OutBuffer::around(&mut buf[..]);
            let hint = dec.run(&mut inb, &mut outb)?;
            let (used, made) = (inb.pos(), outb.pos());
            if hint == 0 {
                self.frame_done = true;
            } else if used > 0 {
                self.frame_done = false;
            }
            self.out.put(&buf[..made])?;
            input = &input[used..];
            if used == 0 && made == 0 {
                return Err(std::io::Error::other("the zstd stream makes no progress"));
            }
        }
        Ok(())
    }

    /// Flush and sync nothing yet (publishing syncs the session); returns the
    /// hash of what was written, checking its size.
    fn finish(mut self) -> std::io::Result<Hash> {
        if let Some(dec) = &mut self.dec {
            // Drain what the decoder holds; its last hint says whether the
            // frame ended.
            use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
            let mut buf = vec![0u8; 256 << 10];
            loop {
                let mut outb = OutBuffer::around(&mut buf[..]);
                if dec.run(&mut InBuffer::around(&[]), &mut outb)? == 0 {
                    self.frame_done = true;
                }
                let made = outb.pos();
                self.out.put(&buf[..made])?;
                if made == 0 {
                    break;
                }
            }
        }
        if self.dec.is_some() && !self.frame_done {
            return Err(std::io::Error::other(format!(
                "its zstd stream is truncated ({} bytes decompressed, its manifest gives {})",
                self.out.written, self.out.size
            )));
        }
        if self.out.written != self.out.size {
            return Err(std::io::Error::other(format!(
                "it has {} bytes, its manifest gives {}",
                self.out.written, self.out.size
            )));
        }
        self.out.file.flush()?;
        // A trailing hole: the length, without writing.
        self.out.file.get_ref().set_len(self.out.size)?;
        Ok(Hash::from(self.out.hasher.finalize()))
    }
}

/// Write an object's stored bytes `body` into `out`, decompressed when `o`
/// says so and bounded by `size` (the caller hashes what was written).
pub fn write_checked(out: &File, size: u64, o: RemoteObject, body: &[u8]) -> std::io::Result<()> {
    let mut sink = Checked::new(out.try_clone()?, size, o.compressed)?;
    sink.write(body)?;
    sink.finish().map(|_| ())
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
mod tests {
    use super::*;

    fn written(size: u64, compressed: bool, body: &[u8]) -> std::io::Result<Vec<u8>> {
        let f = tempfile::tempfile()?;
        let o = RemoteObject {
            compressed,
            stored_size: body.len() as u64,
        };
        write_checked(&f, size, o, body)?;
        let mut out = Vec::new();
        std::io::Seek::rewind(&mut &f)?;
        (&f).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn stored_bytes_are_decompressed_bounded_and_checked_for_a_whole_frame() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let z = zstd::bulk::compress(&data, WIRE_LEVEL).expect("compress");
        assert!(written(300_000, true, &z).expect("whole") == data);
        assert!(written(300_000, false, &data).expect("raw") == data);
        let e = written(300_000, true, &z[..z.len() / 2]).expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
        // A bomb stops at the size the manifest gives.
        let bomb = zstd::bulk::compress(&vec![0u8; 50 << 20], 3).expect("bomb");
        let e = written(1000, true, &bomb).expect_err("bomb");
        assert!(e.to_string().contains("more than the 1000 bytes"), "{e}");
        let e = written(10, false, b"eleven byte").expect_err("long");
        assert!(e.to_string().contains("more than"), "{e}");
        let e = written(12, false, b"eleven byte").expect_err("short");
        assert!(e.to_string().contains("11 bytes"), "{e}");
    }

    #[test]
    fn index_finds_what_the_remote_holds_by_folder_or_by_range() {
        let c = Client::over(
            "mem",
            "memory",
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "p",
        )
        .expect("client");
        let held: Vec<Hash> = (0..400u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
        let absent: Vec<Hash> = (400..450u32).map(|i| Hash::of(&i.to_le_bytes())).collect();
        c.block_on(async {
            for (i, h) in held.iter().enumerate() {
                let key = layout::object_key(h, i % 2 == 0);
                c.put(&key, Bytes::from(vec![0u8; i])).await?;
            }
            // Many folders: read by ranges.
            let all: Vec<Hash> = held.iter().chain(&absent).copied().collect();
            let found = index(&c, &all).await?;
            assert_eq!(found.len(), held.len());
            for (i, h) in held.iter().enumerate() {
                let o = found[h];
                assert_eq!((o.compressed, o.stored_size), (i % 2 == 0, i as u64));
            }
            // Few: by folder.
            let few = [held[7], absent[0]];
            let found = index(&c, &few).await?;
            assert!(found.contains_key(&held[7]) && !found.contains_key(&absent[0]));
            Ok::<_, RemoteError>(())
        })
        .expect("index");
    }

    #[test]
    fn runs_of_zeros_become_holes() {
        use std::os::unix::fs::MetadataExt;
        let mut data = vec![0u8; 8 << 20];
        data[100] = 1;
        data[(8 << 20) - 1] = 2;
        let f = tempfile::tempfile().expect("tempfile");
        let o = RemoteObject {
            compressed: false,
            stored_size: data.len() as u64,
        };
        write_checked(&f, data.len() as u64, o, &data).expect("write");
        let m = f.metadata().expect("stat");
        assert_eq!(m.len(), 8 << 20);
        assert!(m.blocks() * 512 < 1 << 20, "{} blocks", m.blocks());
        let mut back = Vec::new();
        std::io::Seek::rewind(&mut &f).expect("rewind");
        (&f).read_to_end(&mut back).expect("read");
        assert!(back == data, "the bytes differ");
    }
}
