//! What a remote holds, under its prefix (remote format 1):
//!
//! ```text
//! vzstore-remote                  "vzstore remote format 1\n" (written by the first push)
//! objects/ab/<64 hex>             an object's bytes, as stored
//! objects/ab/<64 hex>.zst         ... or zstd-compressed, when that saves bytes
//! templates/<name>/<version>      a template document (manifest + record)
//! containers/<name>               a container document (base + its tree)
//! locks/<kind>-<host>-<pid>-<ns>  leases of running pushes and gcs (see gc.rs)
//! ```
//!
//! Documents: magic (`VZT1` or `VZC1`), a little-endian u32 length, a JSON
//! header, then the zstd-compressed manifest encoding. The header carries the
//! manifest's digest, checked on every read, so a damaged document is never
//! taken for a tree.

use serde::{Deserialize, Serialize};

use crate::remote::error::{RemoteError, Result};
use crate::store::hash::Hash;
use crate::store::manifest::Manifest;
use crate::store::records::ImageConfig;

/// The format marker's key and content.
pub const FORMAT_KEY: &str = "vzstore-remote";
pub const FORMAT_TEXT: &str = "vzstore remote format 1\n";

/// zstd level for objects on the wire and at rest. Level 3 (zstd's default)
/// was measured against 1 and 9 on the Debian templates (BENCHMARKS.md,
/// "Push and pull"): 1 saves little time on a push and sends more bytes; 9
/// costs several times the CPU for a few percent.
pub const WIRE_LEVEL: i32 = 3;

/// An object is kept compressed when that saves at least 1/32 of its bytes.
pub fn worth_compressing(raw: u64, compressed: u64) -> bool {
    compressed + raw / 32 < raw
}

/// Key of an object, as stored compressed or not.
pub fn object_key(h: &Hash, compressed: bool) -> String {
    let hex = h.to_hex();
    let ext = if compressed { ".zst" } else { "" };
    format!("objects/{}/{hex}{ext}", &hex[..2])
}

/// The listing folder of objects whose hash starts with byte `b`.
pub fn object_folder(b: u8) -> String {
    format!("objects/{b:02x}/")
}

/// The object a key names, and whether it is compressed; `None` for keys
/// that are not objects.
pub fn parse_object_key(key: &str) -> Option<(Hash, bool)> {
    let rest = key.strip_prefix("objects/")?;
    let (dir, name) = rest.split_once('/')?;
    let (hex, compressed) = match name.strip_suffix(".zst") {
        Some(h) => (h, true),
        None => (name, false),
    };
    let h = Hash::from_hex(hex)?;
    (dir == &hex[..2]).then_some((h, compressed))
}

pub fn template_key(name: &str, version: u32) -> String {
    format!("templates/{name}/{version}")
}

pub fn container_key(name: &str) -> String {
    format!("containers/{name}")
}

/// A template version on a remote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateHeader {
    pub name: String,
    pub version: u32,
    /// Manifest digest (hex).
    pub digest: String,
    pub entries: u64,
    pub logical_bytes: u64,
    /// Distinct objects and their bytes (logical).
    pub objects: u64,
    pub object_bytes: u64,
    /// Where the pushing node ingested it from.
    pub source: String,
    /// Seconds since the epoch of the push, and who pushed.
    pub pushed: i64,
    pub pushed_by: String,
    pub image_config: Option<ImageConfig>,
}

/// A container on a remote: its base template version and its whole tree
/// (every file's content an object on the remote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerHeader {
    pub name: String,
    /// `fuse` or `kernel`.
    pub backend: String,
    pub template: String,
    pub version: u32,
    /// Digest of the base manifest (hex).
    pub template_digest: String,
    /// Digest of the tree's manifest (hex).
    pub digest: String,
    pub pushed: i64,
    pub pushed_by: String,
}

const TEMPLATE_MAGIC: &[u8; 4] = b"VZT1";
const CONTAINER_MAGIC: &[u8; 4] = b"VZC1";
/// Bound on a document's decompressed manifest (a manifest of millions of
/// entries is well under this).
const MAX_MANIFEST: usize = 1 << 30;

fn encode_doc<H: Serialize>(magic: &[u8; 4], header: &H, m: &Manifest) -> Vec<u8> {
    // Neither can fail on data in memory (string-keyed maps, a buffer); an
    // empty document must never be written in their place.
    let json = serde_json::to_vec(header).expect("a header serializes to memory");
    let body = zstd::bulk::compress(&m.encode(), WIRE_LEVEL).expect("zstd compresses a buffer");
    let mut out = Vec::with_capacity(8 + json.len() + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&body);
    out
}

fn decode_doc<H: for<'de> Deserialize<'de>>(
    magic: &[u8; 4],
    raw: &[u8],
    digest_of: impl Fn(&H) -> &str,
    bad: impl Fn(String) -> RemoteError,
) -> Result<(H, Manifest)> {
    if raw.len() < 8 || &raw[..4] != magic {
        return Err(bad("wrong magic (not a document of this kind)".into()));
    }
    let len = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
    let json = raw
        .get(8..8 + len)
        .ok_or_else(|| bad("truncated header".into()))?;
    let header: H = serde_json::from_slice(json).map_err(|e| bad(format!("header: {e}")))?;
    let body = zstd::bulk::decompress(&raw[8 + len..], MAX_MANIFEST)
        .map_err(|e| bad(format!("manifest: {e}")))?;
    let m = Manifest::decode(&body).map_err(|e| bad(format!("manifest: {e}")))?;
    if m.digest().to_hex() != digest_of(&header) {
        return Err(bad(
            "the manifest does not match the digest its header records".into(),
        ));
    }
    // A tree from elsewhere is checked like a source's: no `..`, no
    // orphans, nothing a mount or an export could be led astray by.
    m.validate().map_err(&bad)?;
    Ok((header, m))
}

pub fn encode_template(h: &TemplateHeader, m: &Manifest) -> Vec<u8> {
    encode_doc(TEMPLATE_MAGIC, h, m)
}

pub fn decode_template(remote: &str, key: &str, raw: &[u8]) -> Result<(TemplateHeader, Manifest)> {
    let (h, m) = decode_doc(
        TEMPLATE_MAGIC,
        raw,
        |h: &TemplateHeader| &h.digest,
        |reason| RemoteError::BadDocument {
            remote: remote.to_string(),
            key: key.to_string(),
            reason,
        },
    )?;
    if key != template_key(&h.name, h.version) {
        return Err(RemoteError::BadDocument {
            remote: remote.to_string(),
            key: key.to_string(),
            reason: format!(
                "it describes {}@{}, which is not what its key names",
                h.name, h.version
            ),
        });
    }
    // The figures are shown without reading the manifest: they must be its.
    let objects = crate::remote::transfer::dedup_wanted(m.objects());
    let figures = (
        m.entries.len() as u64,
        m.logical_bytes(),
        objects.len() as u64,
        objects.iter().map(|(_, s)| s).sum::<u64>(),
    );
    if figures != (h.entries, h.logical_bytes, h.objects, h.object_bytes) {
        return Err(RemoteError::BadDocument {
            remote: remote.to_string(),
            key: key.to_string(),
            reason: "its header's figures are not its manifest's".into(),
        });
    }
    Ok((h, m))
}

pub fn encode_container(h: &ContainerHeader, m: &Manifest) -> Vec<u8> {
    encode_doc(CONTAINER_MAGIC, h, m)
}

pub fn decode_container(
    remote: &str,
    key: &str,
    raw: &[u8],
) -> Result<(ContainerHeader, Manifest)> {
    let (h, m) = decode_doc(
        CONTAINER_MAGIC,
        raw,
        |h: &ContainerHeader| &h.digest,
        |reason| RemoteError::BadDocument {
            remote: remote.to_string(),
            key: key.to_string(),
            reason,
        },
    )?;
    if key != container_key(&h.name) {
        return Err(RemoteError::BadDocument {
            remote: remote.to_string(),
            key: key.to_string(),
            reason: format!(
                "it describes container {}, which is not what its key names",
                h.name
            ),
        });
    }
    Ok((h, m))
}

/// This host's name, for documents and leases.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::{Entry, Kind};

    #[test]
    fn object_keys_round_trip_and_reject_strangers() {
        let h = Hash::of(b"x");
        for c in [false, true] {
            assert_eq!(parse_object_key(&object_key(&h, c)), Some((h, c)));
        }
        assert_eq!(parse_object_key("objects/00/zz"), None);
        assert_eq!(
            parse_object_key(&format!("objects/00/{}", h.to_hex())),
            None
        );
        assert_eq!(parse_object_key("templates/a/1"), None);
    }

    #[test]
    fn documents_round_trip_and_damage_is_named() {
        let m = Manifest {
            entries: vec![Entry {
                path: b"".to_vec(),
                kind: Kind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime_sec: 1,
                mtime_nsec: 0,
                size: 0,
                hash: None,
                target: Vec::new(),
                rdev: 0,
                xattrs: Vec::new(),
                link_group: 0,
            }],
        };
        let h = TemplateHeader {
            name: "t".into(),
            version: 3,
            digest: m.digest().to_hex(),
            entries: 1,
            logical_bytes: 0,
            objects: 0,
            object_bytes: 0,
            source: "here".into(),
            pushed: 1,
            pushed_by: "node".into(),
            image_config: None,
        };
        let raw = encode_template(&h, &m);
        let key = template_key("t", 3);
        let (h2, m2) = decode_template("r", &key, &raw).expect("decode");
        assert_eq!((h2, m2.digest()), (h.clone(), m.digest()));
        let mut lie = h.clone();
        lie.digest = Hash::of(b"other").to_hex();
        let e = decode_template("r", &key, &encode_template(&lie, &m)).expect_err("digest");
        assert!(e.to_string().contains("does not match"), "{e}");
        assert!(decode_template("r", &key, &raw[..raw.len() - 3]).is_err());
        let e = decode_template("r", "templates/t/4", &raw).expect_err("key");
        assert!(e.to_string().contains("not what its key names"), "{e}");
        let mut fig = h.clone();
        fig.entries = 2;
        let e = decode_template("r", &key, &encode_template(&fig, &m)).expect_err("figures");
        assert!(e.to_string().contains("figures"), "{e}");
        // A tree that would lead a mount or an export outside its root.
        let mut evil = m.clone();
        let mut up = evil.entries[0].clone();
        up.path = b"../../etc".to_vec();
        evil.entries.push(up);
        let mut eh = h.clone();
        eh.digest = evil.digest().to_hex();
        let e = decode_template("r", &key, &encode_template(&eh, &evil)).expect_err("..");
        assert!(e.to_string().contains("'..'"), "{e}");
        assert!(decode_container("r", "containers/t", &raw).is_err());
    }
}
