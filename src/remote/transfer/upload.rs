//! Sending local objects: each re-hashed as it is read, zstd-compressed
//! when that saves bytes, whole or in checked parts; retried unless another
//! node sent it meanwhile.

use super::*;

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
