//! The records the catalog keeps besides manifests: template versions, containers
//! and the ingest stat cache, and their versioned encoding.
//!
//! Encoding: postcard is not self-describing, so every record value written by
//! this version starts with one tag byte `0x80 | format`. Values written before
//! records were versioned have no tag; they are format 1 and start with the
//! postcard length of a name (at most 64), i.e. a byte below 0x80, so the two
//! cannot be confused. A decoder accepts every format it knows and names the
//! record it cannot read.

use serde::{Deserialize, Serialize};

use crate::store::hash::Hash;

/// A template version as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub name: String,
    pub version: u32,
    /// Seconds since the epoch when it was committed.
    pub created: i64,
    /// Entries in the manifest (all kinds).
    pub entries: u64,
    /// Logical file bytes (hardlinks counted once).
    pub logical_bytes: u64,
    /// Where it was ingested from, for the operator's information.
    pub source: String,
    /// The manifest's [`digest`](crate::store::manifest::Manifest::digest)
    /// (names the kernel image without reading the manifest). `None` in
    /// records written before format 2.
    pub digest: Option<Hash>,
    /// blake3 of its kernel image's bytes, known once the image was made (at
    /// ingest, or by the first kernel mount of an older template); `None` when
    /// the tree has no kernel image. A mount checks the image against it.
    pub image: Option<Hash>,
}

/// A configured remote (catalog key `u/NAME`, JSON): an S3 bucket and a
/// prefix in it. Holds no secret: credentials come from the `AWS_*`
/// environment variables or from the 0600 file named here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub name: String,
    pub bucket: String,
    /// Key prefix inside the bucket ("" for the whole bucket; no slashes at
    /// either end).
    pub prefix: String,
    /// The S3 endpoint (`http://host:port` or `https://...`).
    pub endpoint: String,
    pub region: String,
    /// A credentials file (AWS format, mode 0600 or stricter).
    pub credentials_file: Option<std::path::PathBuf>,
}

impl RemoteRecord {
    /// `s3://BUCKET[/PREFIX]`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// What an OCI image says about running it, kept with a template ingested
/// from one (catalog key `i/NAME\0VERSION`, JSON) and written into images
/// exported from it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    /// The image config's `config` object (Env, Cmd, Entrypoint, WorkingDir,
    /// User, Labels, ...), as the image gave it.
    pub config: serde_json::Value,
    /// The image it came from, with its manifest digest.
    pub from: String,
}

/// Format 1 of a template record (no digest).
#[derive(Deserialize)]
struct TemplateRecordV1 {
    name: String,
    version: u32,
    created: i64,
    entries: u64,
    logical_bytes: u64,
    source: String,
}

impl TemplateRecord {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// How a container's root is served. Recorded with the container: the commands
/// that mount, report and remove it dispatch on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    /// A FUSE daemon serving the container's inode tree (`src/mount/fuse`).
    #[default]
    Fuse,
    /// The kernel: the template's EROFS image and overlayfs over `objects/`,
    /// the container's changes in an upper directory (`src/mount/kernel`).
    /// New variants go at the end: postcard encodes the variant index.
    Kernel,
}

impl Backend {
    /// The name shown to operators and accepted on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Fuse => "fuse",
            Backend::Kernel => "kernel",
        }
    }
}

/// A container: a name, the template version its root starts from, and the
/// backend that serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub template: String,
    pub version: u32,
    /// Seconds since the epoch when it was created.
    pub created: i64,
    pub backend: Backend,
}

impl ContainerRecord {
    /// `template@version` of its base.
    pub fn base_label(&self) -> String {
        format!("{}@{}", self.template, self.version)
    }
}

/// Format 1 of a container record (no backend: always FUSE).
#[derive(Deserialize)]
struct ContainerRecordV1 {
    name: String,
    template: String,
    version: u32,
    created: i64,
}

/// What the ingest stat cache remembers of a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub hash: Hash,
}

/// A record value that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record format {0} is newer than this vzstore understands")]
    UnknownFormat(u8),
    #[error("damaged encoding: {0}")]
    Postcard(#[from] postcard::Error),
}

const TAG: u8 = 0x80;

/// A record type with a versioned encoding.
pub trait Record: Sized + Serialize {
    /// The format this version writes.
    const FORMAT: u8;
    /// Decode the body of format `format` (1 = untagged legacy value).
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, RecordError>;

    /// Tag byte plus postcard body.
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![TAG | Self::FORMAT];
        out.extend(postcard::to_stdvec(self).expect("encoding to a Vec cannot fail"));
        out
    }

    /// Decode any known format.
    fn decode(value: &[u8]) -> Result<Self, RecordError> {
        match value.first() {
            Some(&b) if b & TAG != 0 => Self::decode_format(b & !TAG, &value[1..]),
            _ => Self::decode_format(1, value),
        }
    }
}

impl Record for TemplateRecord {
    const FORMAT: u8 = 2;
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, RecordError> {
        match format {
            1 => {
                let v1: TemplateRecordV1 = postcard::from_bytes(body)?;
                Ok(TemplateRecord {
                    name: v1.name,
                    version: v1.version,
                    created: v1.created,
                    entries: v1.entries,
                    logical_bytes: v1.logical_bytes,
                    source: v1.source,
                    digest: None,
                    image: None,
                })
            }
            2 => Ok(postcard::from_bytes(body)?),
            f => Err(RecordError::UnknownFormat(f)),
        }
    }
}

impl Record for ContainerRecord {
    const FORMAT: u8 = 2;
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, RecordError> {
        match format {
            1 => {
                let v1: ContainerRecordV1 = postcard::from_bytes(body)?;
                Ok(ContainerRecord {
                    name: v1.name,
                    template: v1.template,
                    version: v1.version,
                    created: v1.created,
                    backend: Backend::Fuse,
                })
            }
            2 => Ok(postcard::from_bytes(body)?),
            f => Err(RecordError::UnknownFormat(f)),
        }
    }
}

impl Record for StatEntry {
    const FORMAT: u8 = 1;
    fn decode_format(format: u8, body: &[u8]) -> Result<Self, RecordError> {
        match format {
            1 => Ok(postcard::from_bytes(body)?),
            f => Err(RecordError::UnknownFormat(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct OldContainer<'a> {
        name: &'a str,
        template: &'a str,
        version: u32,
        created: i64,
    }

    #[test]
    fn legacy_container_records_decode_as_fuse() {
        let old = postcard::to_stdvec(&OldContainer {
            name: &"c".repeat(64),
            template: "deb",
            version: 3,
            created: 1_700_000_000,
        })
        .unwrap();
        assert!(old[0] < TAG, "a 64-byte name must not look like a tag");
        let rec = ContainerRecord::decode(&old).unwrap();
        assert_eq!(rec.backend, Backend::Fuse);
        assert_eq!(rec.version, 3);
        assert_eq!(rec.name.len(), 64);
    }

    #[derive(Serialize)]
    struct OldTemplate<'a> {
        name: &'a str,
        version: u32,
        created: i64,
        entries: u64,
        logical_bytes: u64,
        source: &'a str,
    }

    #[test]
    fn format_1_template_records_decode_without_a_digest() {
        let old = OldTemplate {
            name: "deb",
            version: 2,
            created: 1_700_000_000,
            entries: 12,
            logical_bytes: 34,
            source: "/src",
        };
        let mut tagged = vec![TAG | 1];
        tagged.extend(postcard::to_stdvec(&old).unwrap());
        for bytes in [tagged, postcard::to_stdvec(&old).unwrap()] {
            let t = TemplateRecord::decode(&bytes).unwrap();
            assert_eq!(
                (t.version, t.entries, t.digest, t.image),
                (2, 12, None, None)
            );
            assert_eq!(t.source, "/src");
        }
        let t = TemplateRecord {
            digest: Some(Hash([7; 32])),
            image: Some(Hash([8; 32])),
            ..TemplateRecord::decode(&postcard::to_stdvec(&old).unwrap()).unwrap()
        };
        assert_eq!(TemplateRecord::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn current_records_round_trip_and_future_ones_are_refused() {
        let rec = ContainerRecord {
            name: "ct".into(),
            template: "deb".into(),
            version: 1,
            created: 5,
            backend: Backend::Fuse,
        };
        let enc = rec.encode();
        assert_eq!(enc[0], TAG | 2);
        assert_eq!(ContainerRecord::decode(&enc).unwrap(), rec);
        let mut future = enc.clone();
        future[0] = TAG | 9;
        assert!(matches!(
            ContainerRecord::decode(&future),
            Err(RecordError::UnknownFormat(9))
        ));
    }
}
