//! Fetching remote objects into a write session: bounded decompression,
//! holes kept, blake3 checked before anything is staged for publishing.

use super::*;

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
