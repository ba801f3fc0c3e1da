//! vzstore: a content-addressed, deduplicating template store for OS containers.
//!
//! Layers, each folder one part (arrows point one way, see ARCHITECTURE.md):
//!
//! ```text
//! cli (binary) -> mount -> daemon -> container -> ingest -> archive
//!              -> export -> lifecycle -> container      \-> store
//! ```
//!
//! - [`store`]: the core. Objects, the catalog (RocksDB), write sessions, gc,
//!   verify, reports, export. Knows nothing of FUSE or the command line.
//! - [`ingest`]: the ingest pipeline and its sources (directories, tar
//!   streams, OCI images).
//! - [`archive`]: tar reading and writing and compression, store-agnostic.
//! - [`export`]: templates and containers out as directories, tar, OCI.
//! - [`container`]: a container's inode tree, its journal and its usage.
//! - [`daemon`]: starting detached daemons, readiness, the mount table.
//! - [`mount`]: the backend seam and the FUSE backend (fuser).

pub mod archive;
pub mod container;
pub mod daemon;
pub mod export;
pub mod ingest;
pub mod lifecycle;
pub mod mount;
pub mod remote;
pub mod store;
