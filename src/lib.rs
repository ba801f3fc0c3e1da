//! vzstore: a content-addressed, deduplicating template store for OS containers.
//!
//! Layers (arrows point one way): `cli` -> `fs` -> `store`.
//! - [`store`] is the core: objects, metadata, manifests, ingest, export, verify,
//!   gc and reports. It knows nothing of FUSE or the command line.
//! - [`fs`] serves a container's tree through FUSE (fuser); thin, no semantics.
//! - `cli` lives in the binary and only parses, calls the store and prints.

pub mod fs;
pub mod store;
