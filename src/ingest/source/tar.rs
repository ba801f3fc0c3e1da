//! A tar archive source: a file or standard input, plain or compressed
//! (recognised from its bytes). Members stream through the reader straight
//! into the sink: each file is hashed as it is read and staged only when the
//! store lacks it; no temporary tree, memory bounded by one member's buffer.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::members::{Content, MemberTree, Mode, Place};
use super::{Source, SourceTree};
use crate::archive::TarError;
use crate::archive::compress;
use crate::archive::read::{Member, MemberKind, TarReader};
use crate::ingest::sink::ObjectSink;
use crate::store::error::{Error, IoContext, Result};
use crate::store::hash::Hash;

/// Files up to this size are read into memory, hashed, and written only when
/// new.
const SMALL_FILE: u64 = 1 << 20;

/// Where the archive comes from.
pub enum TarInput {
    File(PathBuf),
    Stdin,
}

/// A tar archive to ingest.
pub struct TarSource {
    input: TarInput,
}

impl TarSource {
    pub fn new(input: TarInput) -> TarSource {
        TarSource { input }
    }

    fn label(&self) -> PathBuf {
        match &self.input {
            TarInput::File(p) => p.clone(),
            TarInput::Stdin => PathBuf::from("standard input"),
        }
    }
}

impl Source for TarSource {
    fn describe(&self) -> String {
        match &self.input {
            TarInput::File(p) => format!("tar:{}", p.display()),
            TarInput::Stdin => "tar:-".into(),
        }
    }

    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree> {
        let label = self.label();
        let input: Box<dyn Read + Send> = match &self.input {
            TarInput::File(p) => Box::new(File::open(p).at(p)?),
            TarInput::Stdin => Box::new(std::io::stdin()),
        };
        let (_, decoded) = compress::decoder(input).at(&label)?;
        sink.progress().start_stream();
        let mut tar = TarReader::new(decoded);
        let mut tree = MemberTree::new(Mode::Archive, label.clone());
        let tickets = Tickets::default();
        read_members(&mut tar, &mut tree, sink, &label, &tickets)?;
        let (entries, warnings) = tree.finish(&tickets.into_vec());
        Ok(SourceTree {
            entries,
            warnings,
            ..SourceTree::default()
        })
    }
}

/// An archive error as a store error naming `source`.
pub(super) fn tar_error(source: &Path, e: TarError) -> Error {
    match e {
        TarError::Checksum { offset: 0 } | TarError::Truncated { offset: 0, .. } => {
            Error::BadSource {
                path: source.to_path_buf(),
                reason: "not a tar archive (nor a directory, nor gzip, zstd, xz or bzip2 data)"
                    .into(),
            }
        }
        TarError::Io(err) => Error::Io {
            path: source.to_path_buf(),
            err,
        },
        e => Error::BadSource {
            path: source.to_path_buf(),
            reason: e.to_string(),
        },
    }
}

/// Hashes of the files handed to workers, by ticket (see [`read_members`]).
#[derive(Default)]
pub(super) struct Tickets(Mutex<Vec<Option<Hash>>>);

impl Tickets {
    fn set(&self, t: u32, h: Hash) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() <= t as usize {
            v.resize(t as usize + 1, None);
        }
        v[t as usize] = Some(h);
    }

    /// The hashes, indexed by ticket.
    pub(super) fn into_vec(self) -> Vec<Option<Hash>> {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// Small files in flight to the workers at most (each at most [`SMALL_FILE`]):
/// the bound on the memory an archive of any size takes.
const QUEUE: usize = 16;

/// Read every member of `tar` into `tree`, handing file content to `sink`.
/// The reader parses and decompresses; small files are hashed and staged by
/// two worker threads meanwhile (their hashes come back by ticket, into
/// `tickets`), large ones stream through the reader itself.
pub(super) fn read_members<R: Read>(
    tar: &mut TarReader<R>,
    tree: &mut MemberTree,
    sink: &ObjectSink<'_>,
    source: &Path,
    tickets: &Tickets,
) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(QUEUE);
    let rx = Mutex::new(rx);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let read = std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((t, data)) = job else { break };
                    match sink.store_bytes(&data) {
                        Ok(h) => {
                            tickets.set(t, h);
                            sink.progress().advance(data.len() as u64);
                        }
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
        let read = (|| {
            while let Some(m) = tar.next_member().map_err(|e| tar_error(source, e))? {
                if failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    break;
                }
                let Place::Path(path) = tree.place(&m)? else {
                    continue;
                };
                let content = match (m.kind, &m.sparse) {
                    (MemberKind::File, None) if m.size <= SMALL_FILE => {
                        let data = small_content(tar, &m, source)?;
                        let t = tree.ticket();
                        if tx.send((t, data)).is_err() {
                            break;
                        }
                        Some(Content::Ticket(t))
                    }
                    (MemberKind::File, _) => Some(Content::Hash(content(tar, &m, sink, source)?)),
                    _ => None,
                };
                tree.insert(path, &m, content)?;
            }
            Ok(())
        })();
        drop(tx);
        read
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    read
}

/// The data of a small file member, read whole.
fn small_content<R: Read>(tar: &mut TarReader<R>, m: &Member, source: &Path) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; m.size as usize];
    let mut got = 0;
    while got < buf.len() {
        match tar
            .read_data(&mut buf[got..])
            .map_err(|e| tar_error(source, e))?
        {
            0 => break,
            n => got += n,
        }
    }
    Ok(buf)
}

/// Hash and stage the data of a large or sparse file member as it streams.
fn content<R: Read>(
    tar: &mut TarReader<R>,
    m: &Member,
    sink: &ObjectSink<'_>,
    source: &Path,
) -> Result<Hash> {
    let whole = [(0, m.size)];
    let segments = m.sparse.as_deref().unwrap_or(&whole);
    let hash = sink.store_stream(m.size, segments, &mut |b| {
        tar.read_data(b).map_err(|e| tar_error(source, e))
    })?;
    sink.progress().advance(m.size);
    Ok(hash)
}
