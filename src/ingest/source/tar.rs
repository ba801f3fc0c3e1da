//! A tar archive source: a file or standard input, plain or compressed
//! (recognised from its bytes). Members stream through the reader straight
//! into the sink: each file is hashed as it is read and staged only when the
//! store lacks it; no temporary tree, memory bounded by one member's buffer.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::members::{MemberTree, Mode, Place};
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
        let mut tar = TarReader::new(decoded);
        let mut tree = MemberTree::new(Mode::Archive, label.clone());
        read_members(&mut tar, &mut tree, sink, &label)?;
        let (entries, warnings) = tree.finish();
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

/// Read every member of `tar` into `tree`, handing file content to `sink`.
pub(super) fn read_members<R: Read>(
    tar: &mut TarReader<R>,
    tree: &mut MemberTree,
    sink: &ObjectSink<'_>,
    source: &Path,
) -> Result<()> {
    while let Some(m) = tar.next_member().map_err(|e| tar_error(source, e))? {
        let Place::Path(path) = tree.place(&m)? else {
            continue;
        };
        let hash = match m.kind {
            MemberKind::File => Some(content(tar, &m, sink, source)?),
            _ => None,
        };
        tree.insert(path, &m, hash)?;
    }
    Ok(())
}

/// Hash and stage the data of file member `m`.
fn content<R: Read>(
    tar: &mut TarReader<R>,
    m: &Member,
    sink: &ObjectSink<'_>,
    source: &Path,
) -> Result<Hash> {
    let hash = match &m.sparse {
        None if m.size <= SMALL_FILE => {
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
            sink.store_bytes(&buf)?
        }
        map => {
            let whole = [(0, m.size)];
            let segments = map.as_deref().unwrap_or(&whole);
            sink.store_stream(m.size, segments, &mut |b| {
                tar.read_data(b).map_err(|e| tar_error(source, e))
            })?
        }
    };
    sink.progress().advance(m.size);
    Ok(hash)
}
