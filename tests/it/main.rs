//! vzstore integration tests: one binary, one module per area. They run as root
//! (device nodes, owners, trusted xattrs) and use the real binary.

mod common;
mod container_basic;
mod container_isolation;
mod container_liveness;
mod container_model;
mod container_workload;
mod faults;
mod integrity;
mod regressions;
mod security;
mod store_bad_input;
mod store_crash;
mod store_dedup;
mod store_fidelity;
mod store_gc;
mod store_real_trees;
mod store_verify;
