//! Ingest sources: where a template's tree comes from. One trait, one file per
//! kind of source: [`dir`] (a directory on a local file system, with a stat
//! cache that skips unchanged files). Archive and image sources (tar streams,
//! OCI layers with whiteouts) implement the same trait: they yield entries as
//! they read them and hand each file's bytes to the sink as a stream, with no
//! temporary tree.

pub mod dir;

use crate::ingest::sink::ObjectSink;
use crate::store::catalog::StatEntry;
use crate::store::error::Result;
use crate::store::manifest::Entry;

/// A stat-cache entry to record, keyed by `(dev, ino)`.
pub type StatUpdate = ((u64, u64), StatEntry);

/// What a source produced.
#[derive(Debug, Default)]
pub struct SourceTree {
    /// Every entry of the tree, in any order; the root directory has the empty
    /// path. Regular files carry the hash the sink returned; members of a
    /// hardlink group other than its leader (first in path order) may leave it
    /// `None`, the pipeline fills it in.
    pub entries: Vec<Entry>,
    /// Stat-cache entries to commit with the template (directory sources).
    pub stat_updates: Vec<StatUpdate>,
    /// Things skipped or changed on the way, for the operator.
    pub warnings: Vec<String>,
}

/// A tree to ingest.
///
/// Contract: `read` hands every regular file's content to `sink` (or proves the
/// sink already holds it with [`ObjectSink::known`]) and returns the entries.
/// It reports bad input (unreadable file, a file changing while read, a member
/// escaping the tree) as an error naming the input, and then the ingest commits
/// nothing. It may use threads; the sink is `Sync`.
pub trait Source {
    /// What is ingested, for messages and the template record (e.g. a path).
    fn describe(&self) -> String;
    /// Produce the tree (see the trait documentation).
    fn read(&mut self, sink: &ObjectSink<'_>) -> Result<SourceTree>;
}
