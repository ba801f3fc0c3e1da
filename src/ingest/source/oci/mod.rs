//! OCI image sources: an image layout directory (`oci:DIR[:TAG]`), an OCI
//! archive (`oci-archive:FILE[:TAG]`, a tar of a layout) and a docker archive
//! (`docker-archive:FILE[:TAG]`, what `docker save` and `podman save` write).
//!
//! The image is resolved to its manifest (by tag, or the only one; a nested
//! index picks this machine's platform), then its layers are applied in
//! order into one [`MemberTree`] with whiteouts and opaque directories. Every
//! document and layer is checked against its digest as it is read (layers
//! also against the config's `diff_ids`); a mismatch fails the ingest before
//! anything is committed. The image config's runtime part (Env, Cmd,
//! Entrypoint, WorkingDir, User, Labels...) is kept with the template.

mod blobs;

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::members::{MemberTree, Mode};
use super::tar::{Tickets, read_members, tar_error};
use super::{ImageConfig, Source, SourceTree};
use crate::archive::compress;
use crate::archive::read::TarReader;
use crate::ingest::sink::ObjectSink;
use crate::store::error::{Error, IoContext, Result};
pub use blobs::Digest;
use blobs::{Blobs, Hashing, seen};

/// The kinds of image reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Layout,
    OciArchive,
    DockerArchive,
}

/// An image named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub kind: ImageKind,
    pub path: PathBuf,
    pub tag: Option<String>,
}

impl ImageRef {
    /// `oci:`, `oci-archive:` or `docker-archive:` followed by a path and an
    /// optional `:TAG`; `None` for anything else. The path is the longest
    /// prefix that exists (so tags holding `:` and `/` work).
    pub fn parse(spec: &str) -> Option<ImageRef> {
        let (kind, rest) = if let Some(r) = spec.strip_prefix("oci:") {
            (ImageKind::Layout, r)
        } else if let Some(r) = spec.strip_prefix("oci-archive:") {
            (ImageKind::OciArchive, r)
        } else if let Some(r) = spec.strip_prefix("docker-archive:") {
            (ImageKind::DockerArchive, r)
        } else {
            return None;
        };
        let (path, tag) = split_tag(rest);
        Some(ImageRef { kind, path, tag })
    }

    pub fn prefix(&self) -> &'static str {
        match self.kind {
            ImageKind::Layout => "oci",
            ImageKind::OciArchive => "oci-archive",
            ImageKind::DockerArchive => "docker-archive",
        }
    }
}

fn split_tag(rest: &str) -> (PathBuf, Option<String>) {
    if Path::new(rest).exists() {
        return (rest.into(), None);
    }
    for (i, _) in rest.match_indices(':') {
        if Path::new(&rest[..i]).exists() {
            return (rest[..i].into(), Some(rest[i + 1..].to_string()));
        }
    }
    match rest.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p.into(), Some(t.to_string())),
        _ => (rest.into(), None),
    }
}

/// One layer to apply.
struct Layer {
    /// Its path among the blobs.
    name: String,
    /// The digest of its stored bytes (OCI), checked as it is read.
    digest: Option<Digest>,
    size: Option<u64>,
    /// The digest of its uncompressed tar (the config's `diff_ids`).
    diff_id: Option<Digest>,
}

/// A resolved image: its layers and its config.
struct Resolved {
    layers: Vec<Layer>,
    config: Value,
    /// The manifest's digest (OCI) or config's (docker), for the record.
    id: String,
}

/// An image to ingest.
pub struct OciSource {
    image: ImageRef,
}

impl OciSource {
    pub fn new(image: ImageRef) -> OciSource {
        OciSource { image }
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadSource {
            path: self.image.path.clone(),
            reason: reason.into(),
        }
    }
}

impl Source for OciSource {
    fn describe(&self) -> String {
        let tag = self
            .image
            .tag
            .as_deref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default();
        format!("{}:{}{tag}", self.image.prefix(), self.image.path.display())
    }

    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree> {
        let blobs = match self.image.kind {
            ImageKind::Layout => {
                let meta = std::fs::metadata(&self.image.path).at(&self.image.path)?;
                if !meta.is_dir() {
                    return Err(self.bad("not a directory (an OCI image layout is a directory; use oci-archive: for a tar)"));
                }
                Blobs::Dir(self.image.path.clone())
            }
            _ => Blobs::index_tar(&self.image.path)?,
        };
        let resolved = match self.image.kind {
            ImageKind::DockerArchive => self.resolve_docker(&blobs)?,
            _ => self.resolve_oci(&blobs)?,
        };
        let diff_ids = diff_ids(&resolved.config);
        if diff_ids.len() != resolved.layers.len() {
            return Err(self.bad(format!(
                "the image has {} layers but its config lists {} diff_ids (rootfs.diff_ids)",
                resolved.layers.len(),
                diff_ids.len()
            )));
        }
        if let Some(os) = resolved.config["os"].as_str().filter(|os| *os != "linux") {
            return Err(self.bad(format!("an image for {os:?}; templates are Linux trees")));
        }
        sink.progress().start_stream();
        let mut tree = MemberTree::new(Mode::Layers, self.image.path.clone());
        let tickets = Tickets::default();
        for (i, layer) in resolved.layers.iter().enumerate() {
            tree.next_layer();
            let want_diff = layer
                .diff_id
                .clone()
                .or_else(|| diff_ids[i].clone())
                .ok_or_else(|| self.bad(format!("diff_id {i} of the config is not a digest")))?;
            self.apply_layer(&blobs, layer, &want_diff, &mut tree, sink, &tickets)?;
        }
        let (entries, warnings) = tree.finish(&tickets.into_vec());
        let c = &resolved.config;
        let image_config = ImageConfig {
            architecture: c["architecture"].as_str().unwrap_or_default().to_string(),
            os: c["os"].as_str().unwrap_or_default().to_string(),
            config: c.get("config").cloned().unwrap_or(Value::Null),
            from: format!("{}@{}", self.describe(), resolved.id),
        };
        Ok(SourceTree {
            entries,
            warnings,
            image_config: Some(image_config),
            ..SourceTree::default()
        })
    }
}

impl OciSource {
    /// Apply one layer, checking its digests.
    fn apply_layer(
        &self,
        blobs: &Blobs,
        layer: &Layer,
        diff_id: &Digest,
        tree: &mut MemberTree,
        sink: &ObjectSink<'_>,
        tickets: &Tickets,
    ) -> Result<()> {
        let label = PathBuf::from(format!(
            "{} layer {}",
            self.image.path.display(),
            layer.name
        ));
        let (raw, size) = blobs.open(&layer.name)?;
        if let Some(want) = layer.size
            && want != size
        {
            return Err(self.bad(format!(
                "layer {}: {size} bytes, its manifest says {want}",
                layer.name
            )));
        }
        // Docker archives name layers by path, not digest: only the
        // uncompressed digest (diff_id) is checked for them.
        let stored_hasher = layer.digest.as_ref().unwrap_or(diff_id).hasher();
        let (mut raw, stored) = Hashing::new(raw, stored_hasher);
        {
            let (_, decoded) = compress::decoder(&mut raw).at(&label)?;
            let (decoded, plain) = Hashing::new(decoded, diff_id.hasher());
            let mut tar = TarReader::new(decoded);
            read_members(&mut tar, tree, sink, &label, tickets)?;
            tar.into_inner()
                .drain()
                .map_err(|e| tar_error(&label, e.into()))?;
            let (got, _) = seen(&plain);
            if got != diff_id.to_string() {
                return Err(self.bad(format!(
                    "layer {}: its uncompressed tar hashes to {got}, not to its diff_id {diff_id}",
                    layer.name
                )));
            }
        }
        raw.drain().at(&label)?;
        if let Some(want) = &layer.digest {
            let (got, _) = seen(&stored);
            if got != want.to_string() {
                return Err(self.bad(format!(
                    "layer {}: its bytes hash to {got}, not to its digest {want}; refused",
                    layer.name
                )));
            }
        }
        Ok(())
    }

    fn json(&self, blobs: &Blobs, name: &str, digest: Option<&Digest>) -> Result<Value> {
        let data = blobs.read_small(name, digest)?;
        serde_json::from_slice(&data).map_err(|e| self.bad(format!("{name}: not valid JSON: {e}")))
    }

    fn digest_of(&self, v: &Value, what: &str) -> Result<Digest> {
        let s = v["digest"].as_str().unwrap_or_default();
        Digest::parse(s)
            .ok_or_else(|| self.bad(format!("{what}: {s:?} is not a sha256 or sha512 digest")))
    }

    /// index.json -> (nested index ->) manifest -> config and layers.
    fn resolve_oci(&self, blobs: &Blobs) -> Result<Resolved> {
        let index = self.json(blobs, "index.json", None)?;
        let mut desc = self.pick_manifest(&index)?;
        for depth in 0.. {
            let media = desc["mediaType"].as_str().unwrap_or_default();
            if !media.contains("index") && !media.contains("manifest.list") {
                break;
            }
            if depth == 4 {
                return Err(self.bad("image indexes nested more than 4 deep"));
            }
            let d = self.digest_of(&desc, "index")?;
            let nested = self.json(blobs, &d.blob_path(), Some(&d))?;
            desc = self.pick_platform(&nested)?;
        }
        let md = self.digest_of(&desc, "manifest")?;
        let manifest = self.json(blobs, &md.blob_path(), Some(&md))?;
        let cd = self.digest_of(&manifest["config"], "config")?;
        let config = self.json(blobs, &cd.blob_path(), Some(&cd))?;
        let mut layers = Vec::new();
        for l in manifest["layers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let media = l["mediaType"].as_str().unwrap_or_default();
            if !media.is_empty() && !media.contains("tar") {
                return Err(self.bad(format!("a layer of type {media:?} is not a tar layer")));
            }
            if l.get("urls").is_some_and(|u| !u.is_null()) {
                return Err(self.bad("a foreign layer (fetched from URLs) is not supported"));
            }
            let d = self.digest_of(l, "layer")?;
            layers.push(Layer {
                name: d.blob_path(),
                size: l["size"].as_u64(),
                digest: Some(d),
                diff_id: None,
            });
        }
        Ok(Resolved {
            layers,
            config,
            id: md.to_string(),
        })
    }

    /// The manifest descriptor of index.json that the tag names (or the only
    /// one).
    fn pick_manifest(&self, index: &Value) -> Result<Value> {
        let all = index["manifests"].as_array().cloned().unwrap_or_default();
        let name = |d: &Value| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let matches: Vec<&Value> = match &self.image.tag {
            None => all.iter().collect(),
            Some(t) => all.iter().filter(|d| tag_matches(&name(d), t)).collect(),
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] if all.is_empty() => Err(self.bad("index.json lists no image")),
            _ => {
                let names: Vec<String> = all.iter().map(name).collect();
                Err(self.bad(match &self.image.tag {
                    Some(t) => format!("no single image tagged {t:?}; the index has {names:?}"),
                    None => format!(
                        "the index holds {} images; name one with :TAG ({names:?})",
                        all.len()
                    ),
                }))
            }
        }
    }

    /// From an image index, the manifest for this machine (linux and its
    /// architecture), or the only one.
    fn pick_platform(&self, index: &Value) -> Result<Value> {
        let all = index["manifests"].as_array().cloned().unwrap_or_default();
        if let [one] = all.as_slice() {
            return Ok(one.clone());
        }
        let arch = host_arch();
        all.iter()
            .find(|d| d["platform"]["os"] == "linux" && d["platform"]["architecture"] == arch)
            .cloned()
            .ok_or_else(|| self.bad(format!("the image index has no linux/{arch} image")))
    }

    /// manifest.json -> config and layers (their digests are the config's
    /// diff_ids).
    fn resolve_docker(&self, blobs: &Blobs) -> Result<Resolved> {
        let list = self.json(blobs, "manifest.json", None)?;
        let all = list.as_array().cloned().unwrap_or_default();
        let tags = |d: &Value| -> Vec<String> {
            d["RepoTags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let picked: Vec<&Value> = match &self.image.tag {
            None => all.iter().collect(),
            Some(t) => all
                .iter()
                .filter(|d| tags(d).iter().any(|n| tag_matches(n, t)))
                .collect(),
        };
        let m = match picked.as_slice() {
            [one] => *one,
            _ => {
                let names: Vec<Vec<String>> = all.iter().map(tags).collect();
                return Err(self.bad(format!(
                    "name one image of the archive with :TAG (it holds {names:?})"
                )));
            }
        };
        let config_name = m["Config"]
            .as_str()
            .ok_or_else(|| self.bad("manifest.json: no Config"))?;
        // The config file is named by its sha256 in every docker archive.
        let stem = Path::new(config_name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let cd = Digest::parse(&format!("sha256:{stem}"));
        let config = self.json(blobs, config_name, cd.as_ref())?;
        let ids = diff_ids(&config);
        let names = m["Layers"].as_array().cloned().unwrap_or_default();
        if ids.len() != names.len() {
            return Err(self.bad(format!(
                "manifest.json lists {} layers, the config {} diff_ids",
                names.len(),
                ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (n, id) in names.iter().zip(ids) {
            let name = n
                .as_str()
                .ok_or_else(|| self.bad("manifest.json: a layer that is not a path"))?;
            layers.push(Layer {
                name: name.to_string(),
                digest: None,
                size: None,
                diff_id: Some(
                    id.ok_or_else(|| self.bad("the config has a diff_id that is not a digest"))?,
                ),
            });
        }
        Ok(Resolved {
            layers,
            config,
            id: cd.map(|d| d.to_string()).unwrap_or_default(),
        })
    }
}

/// `name` (as `NAME:TAG`, `TAG`, or a full reference) is what `tag` asks for.
fn tag_matches(name: &str, tag: &str) -> bool {
    name == tag
        || name.rsplit_once(':').is_some_and(|(_, t)| t == tag)
        || name.strip_prefix("localhost/") == Some(tag)
}

/// The config's `rootfs.diff_ids`, each parsed (`None` if malformed).
fn diff_ids(config: &Value) -> Vec<Option<Digest>> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d.as_str().and_then(Digest::parse))
                .collect()
        })
        .unwrap_or_default()
}

/// This machine's architecture as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
