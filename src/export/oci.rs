//! Writing an export tree as an OCI image layout: one layer (the tree as a
//! tar, gzip- or zstd-compressed or plain), a config carrying the template's
//! image config (or a plain OS default), the manifest, and `index.json`
//! with the tag. The layout is written in a hidden directory beside the
//! destination, synced, and renamed into place whole.

use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::tree::ExportTree;
use super::{LayerCompression, Options, temp_beside};
use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::fsutil;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Hashes (sha256) and counts what is written through it.
struct Sha<W> {
    w: W,
    h: Sha256,
    n: u64,
}

impl<W: Write> Sha<W> {
    fn new(w: W) -> Sha<W> {
        Sha {
            w,
            h: Sha256::new(),
            n: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.h.clone().finalize()))
    }
}

impl<W: Write> Write for Sha<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.w.write(buf)?;
        self.h.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

/// Write `tree` as an OCI image layout at `dest` (missing, or an empty
/// directory). Returns the bytes of its blobs.
pub fn write(store: &Store, tree: &ExportTree, dest: &Path, opts: &Options) -> Result<u64> {
    crate::store::export::check_dest(dest)?;
    let tmp = temp_beside(dest);
    let result = write_layout(store, tree, &tmp, opts).and_then(|n| {
        fsutil::sync_fs(&tmp).at(&tmp)?;
        super::put_in_place(&tmp, dest)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::sync_dir(parent).at(parent)?;
        }
        Ok(n)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_layout(store: &Store, tree: &ExportTree, dir: &Path, opts: &Options) -> Result<u64> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).at(&blobs)?;
    // The layer: tar -> sha256 (diff_id) -> compressor -> sha256 (digest) -> file.
    let part = blobs.join("layer.partial");
    let file = std::fs::File::create(&part).at(&part)?;
    let stored = Sha::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let (diff_id, stored) = match opts.compression {
        LayerCompression::None => {
            let mut plain = Sha::new(stored);
            super::tar::write(store, tree, &mut plain, &part)?;
            (plain.digest(), plain.w)
        }
        LayerCompression::Gzip => {
            let gz = flate2::write::GzEncoder::new(stored, flate2::Compression::new(1));
            let mut plain = Sha::new(gz);
            super::tar::write(store, tree, &mut plain, &part)?;
            let d = plain.digest();
            (d, plain.w.finish().at(&part)?)
        }
        LayerCompression::Zstd => {
            let z = zstd::stream::write::Encoder::new(stored, 3).at(&part)?;
            let mut plain = Sha::new(z);
            super::tar::write(store, tree, &mut plain, &part)?;
            let d = plain.digest();
            (d, plain.w.finish().at(&part)?)
        }
    };
    let mut stored = stored;
    stored.flush().at(&part)?;
    let (layer_digest, layer_size) = (stored.digest(), stored.n);
    drop(stored);
    std::fs::rename(&part, blob_path(dir, &layer_digest)).at(&part)?;
    let media = match opts.compression {
        LayerCompression::None => "application/vnd.oci.image.layer.v1.tar",
        LayerCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    let (arch, os, run) = match &tree.config {
        Some(c) => (
            non_empty(
                &c.architecture,
                super::super::ingest::source::oci::host_arch(),
            ),
            non_empty(&c.os, "linux"),
            if c.config.is_null() {
                default_run()
            } else {
                c.config.clone()
            },
        ),
        None => (
            super::super::ingest::source::oci::host_arch().to_string(),
            "linux".into(),
            default_run(),
        ),
    };
    let config = json!({
        "architecture": arch,
        "os": os,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": format!("vzstore export {}", tree.label)}],
    });
    let (cd, cs) = put_json(dir, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": cd, "size": cs},
        "layers": [{"mediaType": media, "digest": layer_digest, "size": layer_size}],
    });
    let (md, ms) = put_json(dir, &manifest)?;
    let tag = opts.tag.clone().unwrap_or_else(|| tree.default_tag.clone());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST, "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    write_file(
        dir,
        "index.json",
        &serde_json::to_vec(&index).map_err(json_err)?,
    )?;
    write_file(dir, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(layer_size + cs + ms)
}

/// An OCI reference name for `index.json`: letters, digits and `._-:/@+`,
/// at most 255 bytes, no `..` component.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 255
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b))
        && !tag.split('/').any(|c| c == ".." || c.is_empty());
    if ok {
        return Ok(());
    }
    Err(Error::InvalidName {
        name: tag.to_string(),
        reason: "an image tag takes letters, digits and ._-:/@+ (at most 255, no empty or `..` parts)",
    })
}

fn non_empty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

/// What an image made from a plain OS tree runs.
fn default_run() -> Value {
    json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
    })
}

fn json_err(e: serde_json::Error) -> Error {
    Error::CorruptRecord {
        key: "image config".into(),
        reason: e.to_string(),
    }
}

fn blob_path(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Store a JSON document as a blob; its digest and size.
fn put_json(dir: &Path, v: &Value) -> Result<(String, u64)> {
    let bytes = serde_json::to_vec(v).map_err(json_err)?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let p = blob_path(dir, &digest);
    std::fs::write(&p, &bytes).at(&p)?;
    Ok((digest, bytes.len() as u64))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).at(&p)
}
