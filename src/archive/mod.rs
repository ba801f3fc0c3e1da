//! Archive formats, with no knowledge of the store: the tar reader and writer
//! (ustar, GNU and pax, with long names, sparse files, xattrs and nanosecond
//! times), compression detection, and their errors. The ingest's tar and OCI
//! sources read with [`read::TarReader`]; `export --format tar|oci` writes
//! with [`write::TarWriter`].
//!
//! Everything read here is untrusted: sizes are checked before memory is
//! allocated for them, sparse maps are validated against the data they
//! describe, and decompression is watched for bombs ([`compress`]).

pub mod compress;
mod header;
mod pax;
pub mod read;
mod sparse;
pub mod write;

/// Why an archive could not be read. `offset` is the byte offset of the
/// member's header in the (uncompressed) archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Reading the input failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The archive ends inside a header or a member's data.
    #[error("truncated archive: it ends inside {what} at byte {offset}")]
    Truncated { offset: u64, what: String },
    /// A header whose checksum does not match its bytes.
    #[error("bad header checksum at byte {offset} (a damaged archive, or not a tar archive)")]
    Checksum { offset: u64 },
    /// A header or extended header that cannot be parsed.
    #[error("bad header at byte {offset}: {reason}")]
    Header { offset: u64, reason: String },
    /// A member this reader does not take.
    #[error("member {name:?} at byte {offset}: {reason}")]
    Member {
        offset: u64,
        name: String,
        reason: String,
    },
    /// Decompression produced far more than the input can honestly hold.
    #[error("{0}")]
    Bomb(String),
}

/// The tar block size.
pub const BLOCK: u64 = 512;

/// `n` rounded up to whole blocks.
pub fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK) * BLOCK
}
