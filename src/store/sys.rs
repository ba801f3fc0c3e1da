//! The one audited home of `unsafe` in vzstore: read-only memory maps and
//! `malloc_trim`.
//!
//! Memory maps are `unsafe` because another process could change the mapped file
//! under us. We only map files that the store owns, in directories only root can
//! enter, and that nothing modifies once written (they are replaced by rename,
//! never rewritten): staged objects of this process (`ingest::sink`, repair),
//! published objects while `verify` hashes them, and the sorted object-check
//! records (`store::integrity`). If such a file were truncated by someone else,
//! reads of the vanished tail would raise SIGBUS: that is outside the store's
//! contract. Files outside the store (sources, export destinations) and objects
//! checked by a mount daemon, which must survive anything, are read, not mapped.

use std::fs::File;
use std::io;

/// Map a whole file read-only.
pub(crate) fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: see the module comment: only immutable store-owned files are mapped,
    // and the map is read-only.
    unsafe { memmap2::Mmap::map(file) }
}

/// Give freed heap memory back to the kernel. A mount daemon decodes its base
/// manifest once (megabytes) and frees it; without this, glibc keeps those pages
/// and every idle mount looks that much bigger.
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}
