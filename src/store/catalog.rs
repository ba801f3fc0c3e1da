//! The catalog: the RocksDB database under `<store>/meta` holding template
//! records, their manifests, container records and the ingest stat cache.
//!
//! Concurrency: RocksDB admits one read-write process. Every vzstore process opens
//! the database only for the short moments it needs it, under an exclusive flock on
//! `locks/meta.lock` (waiting for it), and closes it again; long work (hashing,
//! copying, serving a mount) happens with the database closed. So ingests, creates,
//! reports and gc can run side by side; they take turns for milliseconds.
//!
//! Keys (all values postcard unless noted):
//! - `t/<name>\0<version u32 BE>` -> [`TemplateRecord`]
//! - `m/<name>\0<version u32 BE>` -> encoded [`Manifest`](crate::store::manifest)
//! - `s/<dev u64 BE><ino u64 BE>` -> [`StatEntry`]
//! - `c/<name>` -> [`ContainerRecord`]
//! - `r/<name>` -> a container's object references beyond its base (hashes)
//! - `i/<name>\0<version u32 BE>` -> the template's [`ImageConfig`] (JSON)
//! - `u/<name>` -> [`RemoteRecord`] (JSON): a configured remote
//! - `l/<name>\0<version u32 BE>` -> name of the remote a template version was
//!   pulled from lazily (its objects are fetched on first open)
//!
//! Every change is one write batch with a synced WAL: a crash leaves all or nothing.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::PathBuf;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::store::Store;
use crate::store::error::{Error, IoContext, Result};
use crate::store::hash::Hash;
use crate::store::lock;
use crate::store::manifest::Manifest;
use crate::store::name::TemplateRef;
pub use crate::store::records::{
    Backend, ContainerRecord, ImageConfig, Record, RemoteRecord, StatEntry, TemplateRecord,
};
use crate::store::time;

/// The open catalog, held under the store's meta lock.
pub struct Catalog {
    db: DB,
    path: PathBuf,
    _lock: File,
}

fn tkey(prefix: u8, name: &str, version: u32) -> Vec<u8> {
    let mut k = vec![prefix, b'/'];
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl Catalog {
    /// Open the database, waiting for any other process that holds it.
    pub fn open(store: &Store) -> Result<Catalog> {
        let lock = lock::acquire(&store.lock_path("meta"))?;
        let path = store.meta_dir();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(2);
        opts.set_max_log_file_size(1 << 20);
        opts.set_max_open_files(256);
        opts.set_recycle_log_file_num(2);
        // Also caps the WAL preallocation (an fallocate at open, which fails when
        // less is free).
        opts.set_max_total_wal_size(4 << 20);
        // Opened for milliseconds by short processes: keep opening cheap.
        opts.set_skip_stats_update_on_db_open(true);
        opts.set_max_file_opening_threads(1);
        opts.set_max_background_jobs(1);
        // Full disk: Debian's librocksdb is built with assertions, and its info
        // LOG writer asserts after a failed append, aborting the process. Log
        // only fatal events (the header still goes out), keep the MANIFEST
        // preallocation small, and keep the memtable (whose WAL space an open
        // reserves) small, so that a full disk gives a clean ENOSPC error.
        opts.set_log_level(rocksdb::LogLevel::Fatal);
        opts.set_manifest_preallocation_size(64 << 10);
        opts.set_write_buffer_size(4 << 20);
        let db = DB::open(&opts, &path).map_err(|err| Error::Db {
            path: path.clone(),
            err,
        })?;
        // Each open turns the previous process's log into a small table file, and
        // tables with disjoint keys are only moved between levels, never merged.
        // Processes are short, so they would pile up and every open would read
        // more of them (1,000 creates would cost O(n^2)): once there are many,
        // merge everything in the foreground (milliseconds for metadata).
        let tables = fs::read_dir(&path)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".sst"))
                    .count()
            })
            .unwrap_or(0);
        if tables > 16 {
            let mut co = rocksdb::CompactOptions::default();
            co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            db.compact_range_opt(None::<&[u8]>, None::<&[u8]>, &co);
        }
        Ok(Catalog {
            db,
            path,
            _lock: lock,
        })
    }

    /// Open the catalog for reading only, under the same lock: nothing is
    /// written (no log, no flush, no compaction), so it works on a full disk.
    pub fn open_read_only(store: &Store) -> Result<Catalog> {
        let lock = lock::acquire(&store.lock_path("meta"))?;
        let path = store.meta_dir();
        let mut opts = Options::default();
        opts.set_max_open_files(256);
        opts.set_skip_stats_update_on_db_open(true);
        opts.set_max_file_opening_threads(1);
        let db = DB::open_for_read_only(&opts, &path, false).map_err(|err| Error::Db {
            path: path.clone(),
            err,
        })?;
        Ok(Catalog {
            db,
            path,
            _lock: lock,
        })
    }

    fn db_err(&self, err: rocksdb::Error) -> Error {
        Error::Db {
            path: self.path.clone(),
            err,
        }
    }

    fn corrupt(key: &[u8], e: impl std::fmt::Display) -> Error {
        Error::CorruptRecord {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: e.to_string(),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        crate::store::fsutil::failpoint_io("catalog-commit").at(&self.path)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.db_err(e))
    }

    /// Records whose keys start with `prefix`, decoded.
    fn scan<T: Record>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            let rec = T::decode(&v).map_err(|e| Self::corrupt(&k, e))?;
            out.push((k.to_vec(), rec));
        }
        Ok(out)
    }

    /// Every template version, sorted by name then version.
    pub fn templates(&self) -> Result<Vec<TemplateRecord>> {
        Ok(self.scan(b"t/")?.into_iter().map(|(_, r)| r).collect())
    }

    /// The versions of one template name, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<TemplateRecord>> {
        let mut prefix = b"t/".to_vec();
        prefix.extend_from_slice(name.as_bytes());
        prefix.push(0);
        Ok(self.scan(&prefix)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Resolve a reference (latest version when none is given).
    pub fn resolve(&self, r: &TemplateRef) -> Result<TemplateRecord> {
        let versions = self.versions(&r.name)?;
        let found = match r.version {
            Some(v) => versions.into_iter().find(|t| t.version == v),
            None => versions.into_iter().last(),
        };
        found.ok_or_else(|| Error::TemplateNotFound(r.to_string()))
    }

    /// The manifest of a template version.
    pub fn manifest(&self, name: &str, version: u32) -> Result<Manifest> {
        let key = tkey(b'm', name, version);
        let raw = self
            .db
            .get(&key)
            .map_err(|e| self.db_err(e))?
            .ok_or_else(|| Error::TemplateNotFound(format!("{name}@{version}")))?;
        Manifest::decode(&raw).map_err(|e| Self::corrupt(&key, e))
    }

    /// The image config kept with a template version (from an OCI source).
    pub fn image_config(&self, name: &str, version: u32) -> Result<Option<ImageConfig>> {
        let key = tkey(b'i', name, version);
        match self.db.get(&key).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| Self::corrupt(&key, e)),
        }
    }

    /// Commit a new version of template `name` with its manifest, and refresh the
    /// stat cache, in one synced batch. The caller guarantees that every object the
    /// manifest names is already durable in the store.
    pub fn commit_template(
        &self,
        name: &str,
        source: &str,
        manifest: &Manifest,
        stat_updates: &[((u64, u64), StatEntry)],
        image: Option<Hash>,
        config: Option<&ImageConfig>,
    ) -> Result<TemplateRecord> {
        let version = self.versions(name)?.last().map_or(1, |t| t.version + 1);
        let new = NewTemplate {
            name,
            version,
            source,
            image,
            config,
            lazy_from: None,
        };
        self.put_template(&new, manifest, stat_updates)
    }

    /// Commit a template version pulled from a remote, under the version
    /// number it has there. `lazy_from` names the remote when its objects are
    /// not all here yet (a lazy pull). The caller checked that the version is
    /// free; every object it has fetched is durable.
    pub fn commit_pulled_template(
        &self,
        new: &NewTemplate<'_>,
        manifest: &Manifest,
    ) -> Result<TemplateRecord> {
        if let Some(t) = self
            .versions(new.name)?
            .into_iter()
            .find(|t| t.version == new.version)
        {
            return Err(Error::TemplateExists(t.label()));
        }
        self.put_template(new, manifest, &[])
    }

    fn put_template(
        &self,
        new: &NewTemplate<'_>,
        manifest: &Manifest,
        stat_updates: &[((u64, u64), StatEntry)],
    ) -> Result<TemplateRecord> {
        let NewTemplate {
            name,
            version,
            source,
            image,
            config,
            lazy_from,
        } = *new;
        let created = time::now_secs();
        let rec = TemplateRecord {
            name: name.to_string(),
            version,
            created,
            entries: manifest.entries.len() as u64,
            logical_bytes: manifest.logical_bytes(),
            source: source.to_string(),
            digest: Some(manifest.digest()),
            image,
        };
        let mut batch = WriteBatch::default();
        batch.put(tkey(b'm', name, version), manifest.encode());
        batch.put(tkey(b't', name, version), rec.encode());
        if let Some(c) = config {
            let json = serde_json::to_vec(c).map_err(|e| Self::corrupt(b"i/", e))?;
            batch.put(tkey(b'i', name, version), json);
        }
        if let Some(remote) = lazy_from {
            batch.put(tkey(b'l', name, version), remote.as_bytes());
        }
        for ((dev, ino), st) in stat_updates {
            batch.put(stat_key(*dev, *ino), st.encode());
        }
        self.write(batch)?;
        Ok(rec)
    }

    /// The remote a template version was pulled from lazily, if it was and
    /// has not been fetched whole since.
    pub fn lazy_remote(&self, name: &str, version: u32) -> Result<Option<String>> {
        let raw = self
            .db
            .get(tkey(b'l', name, version))
            .map_err(|e| self.db_err(e))?;
        Ok(raw.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Refuse `what` on template version `name@version` while it was pulled
    /// lazily and may lack objects ([`Error::LazyTemplate`]).
    pub fn require_whole(&self, name: &str, version: u32, what: &'static str) -> Result<()> {
        match self.lazy_remote(name, version)? {
            None => Ok(()),
            Some(remote) => Err(Error::LazyTemplate {
                template: format!("{name}@{version}"),
                remote,
                what,
            }),
        }
    }

    /// Every lazily pulled template version: ((name, version), remote).
    pub fn lazy_templates(&self) -> Result<Vec<((String, u32), String)>> {
        let mut out = Vec::new();
        for t in self.templates()? {
            if let Some(r) = self.lazy_remote(&t.name, t.version)? {
                out.push(((t.name, t.version), r));
            }
        }
        Ok(out)
    }

    /// A lazily pulled template version now has every object here: record
    /// the image made from them, and forget the remote.
    pub fn finish_lazy(&self, t: &TemplateRecord, image: Option<Hash>) -> Result<()> {
        let key = tkey(b't', &t.name, t.version);
        let mut rec = match self.db.get(&key).map_err(|e| self.db_err(e))? {
            Some(v) => TemplateRecord::decode(&v).map_err(|e| Self::corrupt(&key, e))?,
            None => return Err(Error::TemplateNotFound(t.label())),
        };
        rec.image = image;
        let mut batch = WriteBatch::default();
        batch.put(key, rec.encode());
        batch.delete(tkey(b'l', &t.name, t.version));
        self.write(batch)
    }

    /// The configured remotes, sorted by name.
    pub fn remotes(&self) -> Result<Vec<RemoteRecord>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"u/", Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if !k.starts_with(b"u/") {
                break;
            }
            out.push(serde_json::from_slice(&v).map_err(|e| Self::corrupt(&k, e))?);
        }
        Ok(out)
    }

    /// One remote, `None` if there is none of that name.
    pub fn remote(&self, name: &str) -> Result<Option<RemoteRecord>> {
        let key = [b"u/", name.as_bytes()].concat();
        match self.db.get(&key).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Self::corrupt(&key, e)),
        }
    }

    /// Add or replace a remote.
    pub fn put_remote(&self, r: &RemoteRecord) -> Result<()> {
        let json = serde_json::to_vec(r).map_err(|e| Self::corrupt(b"u/", e))?;
        let mut batch = WriteBatch::default();
        batch.put([b"u/", r.name.as_bytes()].concat(), json);
        self.write(batch)
    }

    /// Remove a remote; refused while a lazily pulled template still needs it.
    pub fn remove_remote(&self, name: &str) -> Result<()> {
        let users: Vec<String> = self
            .lazy_templates()?
            .into_iter()
            .filter(|(_, r)| r == name)
            .map(|((n, v), _)| format!("{n}@{v}"))
            .collect();
        if !users.is_empty() {
            return Err(Error::RemoteInUse {
                remote: name.to_string(),
                templates: users.join(", "),
            });
        }
        let mut batch = WriteBatch::default();
        batch.delete([b"u/", name.as_bytes()].concat());
        self.write(batch)
    }

    /// Record the manifest digest and the image hash of a template version
    /// (made by a mount, for versions ingested before records carried them).
    pub fn set_template_image(&self, t: &TemplateRecord, digest: Hash, image: Hash) -> Result<()> {
        let key = tkey(b't', &t.name, t.version);
        let mut rec = match self.db.get(&key).map_err(|e| self.db_err(e))? {
            Some(v) => TemplateRecord::decode(&v).map_err(|e| Self::corrupt(&key, e))?,
            None => return Err(Error::TemplateNotFound(t.label())),
        };
        rec.digest = Some(digest);
        rec.image = Some(image);
        let mut batch = WriteBatch::default();
        batch.put(key, rec.encode());
        self.write(batch)
    }

    /// Remove one template version (record and manifest) in one batch.
    pub fn remove_template(&self, name: &str, version: u32) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(tkey(b't', name, version));
        batch.delete(tkey(b'm', name, version));
        batch.delete(tkey(b'i', name, version));
        batch.delete(tkey(b'l', name, version));
        self.write(batch)
    }

    /// Remove several template versions, all or none.
    pub fn remove_templates(&self, targets: &[TemplateRecord]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for t in targets {
            batch.delete(tkey(b't', &t.name, t.version));
            batch.delete(tkey(b'm', &t.name, t.version));
            batch.delete(tkey(b'i', &t.name, t.version));
            batch.delete(tkey(b'l', &t.name, t.version));
        }
        self.write(batch)
    }

    /// Every container, sorted by name.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        Ok(self.scan(b"c/")?.into_iter().map(|(_, r)| r).collect())
    }

    /// One container, `None` if there is none of that name.
    pub fn container(&self, name: &str) -> Result<Option<ContainerRecord>> {
        let key = [b"c/", name.as_bytes()].concat();
        match self.db.get(&key).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => Ok(Some(
                ContainerRecord::decode(&v).map_err(|e| Self::corrupt(&key, e))?,
            )),
        }
    }

    /// Record containers, all or none (one synced write batch).
    pub fn put_containers(&self, recs: &[ContainerRecord]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for rec in recs {
            batch.put([b"c/", rec.name.as_bytes()].concat(), rec.encode());
        }
        self.write(batch)
    }

    /// Remove a container record (and its object references).
    pub fn remove_container(&self, name: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete([b"c/", name.as_bytes()].concat());
        batch.delete(refs_key(name));
        self.write(batch)
    }

    /// Objects a container refers to beyond its base template's (files it
    /// kept across a rebase, files dedup made shared): gc roots like manifests.
    pub fn container_refs(&self, name: &str) -> Result<Vec<Hash>> {
        let key = refs_key(name);
        let raw = self.db.get(&key).map_err(|e| self.db_err(e))?;
        Ok(raw.map(|v| decode_refs(&v)).unwrap_or_default())
    }

    /// Switch containers to other bases, each with the objects it refers to
    /// beyond its base, in one synced batch (the commit point of a rebase).
    pub fn rebase_containers(&self, recs: &[(&ContainerRecord, &[Hash])]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (rec, refs) in recs {
            // Under the catalog lock: a `templates rm` of the base either
            // happened (refused here) or waits and sees the container.
            let key = tkey(b't', &rec.template, rec.version);
            if self.db.get(&key).map_err(|e| self.db_err(e))?.is_none() {
                return Err(Error::TemplateNotFound(rec.base_label()));
            }
            batch.put([b"c/", rec.name.as_bytes()].concat(), rec.encode());
            batch.put(refs_key(&rec.name), encode_refs(refs));
        }
        self.write(batch)
    }

    /// Add objects to what a container refers to (dedup, before the container
    /// itself refers to them).
    pub fn add_container_refs(&self, name: &str, more: &[Hash]) -> Result<()> {
        let mut refs = self.container_refs(name)?;
        refs.extend_from_slice(more);
        let mut batch = WriteBatch::default();
        batch.put(refs_key(name), encode_refs(&refs));
        self.write(batch)
    }

    /// The whole stat cache: `(dev, ino)` -> entry.
    pub fn stat_cache(&self) -> Result<HashMap<(u64, u64), StatEntry>> {
        let mut out = HashMap::new();
        for (k, v) in self.scan::<StatEntry>(b"s/")? {
            if k.len() == 18 {
                let dev = u64::from_be_bytes(k[2..10].try_into().unwrap_or_default());
                let ino = u64::from_be_bytes(k[10..18].try_into().unwrap_or_default());
                out.insert((dev, ino), v);
            }
        }
        Ok(out)
    }

    /// Every object hash that a committed template or a container references:
    /// the manifests (a container's base cannot be removed while it uses it),
    /// and each container's references beyond its base.
    pub fn referenced_objects(&self) -> Result<std::collections::HashSet<Hash>> {
        let mut out = std::collections::HashSet::new();
        for t in self.templates()? {
            let m = self.manifest(&t.name, t.version)?;
            out.extend(m.objects().map(|(h, _)| h));
        }
        for (_, refs) in self.all_container_refs()? {
            out.extend(refs);
        }
        Ok(out)
    }

    /// Every container's references beyond its base: (container, hashes).
    pub fn all_container_refs(&self) -> Result<Vec<(String, Vec<Hash>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(b"r/", Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if !k.starts_with(b"r/") {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[2..]).into_owned(),
                decode_refs(&v),
            ));
        }
        Ok(out)
    }
}

/// A template version to record (see [`Catalog::commit_pulled_template`]).
#[derive(Clone, Copy, Debug)]
pub struct NewTemplate<'a> {
    pub name: &'a str,
    pub version: u32,
    /// Where it came from, for the operator.
    pub source: &'a str,
    /// blake3 of its kernel image, when one was made.
    pub image: Option<Hash>,
    pub config: Option<&'a ImageConfig>,
    /// The remote its objects are still fetched from (lazy pull).
    pub lazy_from: Option<&'a str>,
}

fn refs_key(name: &str) -> Vec<u8> {
    [b"r/", name.as_bytes()].concat()
}

/// References: 32-byte hashes, sorted and unique, concatenated.
fn encode_refs(refs: &[Hash]) -> Vec<u8> {
    let mut v = refs.to_vec();
    v.sort_unstable();
    v.dedup();
    v.iter().flat_map(|h| h.0).collect()
}

fn decode_refs(raw: &[u8]) -> Vec<Hash> {
    raw.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            Hash(h)
        })
        .collect()
}

fn stat_key(dev: u64, ino: u64) -> Vec<u8> {
    let mut k = b"s/".to_vec();
    k.extend_from_slice(&dev.to_be_bytes());
    k.extend_from_slice(&ino.to_be_bytes());
    k
}
