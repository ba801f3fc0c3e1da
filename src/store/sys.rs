//! The one audited home of `unsafe` in vzstore: read-only memory maps and
//! `malloc_trim`.
//!
//! Memory maps are `unsafe` because another process could change the mapped file
//! under us. We only map files that the store owns and never modifies once written
//! (published objects, and staged objects that only this process writes), read-only.
//! If such a file were truncated by someone else, reads of the vanished tail would
//! raise SIGBUS: that is outside the store's contract (objects are read-only files
//! under the store's directory).

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
