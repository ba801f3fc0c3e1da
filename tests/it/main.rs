//! vzstore integration tests: one binary, one module per area, using the real
//! binary. Tests that need root (FUSE mounts, device nodes, other owners, trusted
//! xattrs) skip themselves with the reason when run as a user
//! ([`common::require_root`]); as root every test runs.

mod archive_io;
mod cli;
mod common;
mod container_basic;
mod container_isolation;
mod container_liveness;
mod container_model;
mod container_workload;
mod faults;
mod garage;
mod integrity;
mod kernel_backend;
mod kernel_image;
mod lifecycle;
mod mount_places;
mod oci_io;
mod regressions;
mod remote;
mod security;
mod store_bad_input;
mod store_crash;
mod store_dedup;
mod store_fidelity;
mod store_gc;
mod store_real_trees;
mod store_verify;
mod tree_model;
