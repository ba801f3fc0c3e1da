//! The one audited home of `unsafe` in vzstore: read-only memory maps,
//! `malloc_trim`, the default SIGPIPE action for the command line, file
//! leases for `ingest --consume`, and attaching a loop device (two ioctls) for the kernel
//! backend on kernels that cannot mount an EROFS image file directly.
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

/// Let SIGPIPE end the process, as it does other Unix tools: `vzstore list |
/// head` then stops quietly instead of failing on a write to a closed pipe.
/// Rust's runtime ignores SIGPIPE; only the command line restores it (a mount
/// daemon must never die of a client's pipe).
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal's action to SIG_DFL installs no handler code;
    // it is called once, at the start of main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Take a write lease on `file` (`F_SETLEASE`, `F_WRLCK`): the kernel grants
/// it only when no other open file (of any process, or a shared writable
/// map) refers to the inode. `ingest --consume` moves a file into the store
/// only under one, so no writer can change the object afterwards. False when
/// the lease is refused or the file system has no leases.
pub(crate) fn try_write_lease(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) == 0 }
}

/// Give up a lease taken with [`try_write_lease`].
pub(crate) fn release_lease(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: as above.
    unsafe {
        libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK);
    }
}

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// Attach `file` read-only to a free loop device that detaches itself when its
/// last user closes it (the mount made on it, once the returned handle is
/// dropped). Returns the device's path and that handle.
pub(crate) fn loop_attach(file: &File) -> io::Result<(std::path::PathBuf, File)> {
    use std::os::fd::AsRawFd;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    // Another process may take the free device between the two calls: retry.
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = std::path::PathBuf::from(format!("/dev/loop{n}"));
        let dev = File::open(&path)?;
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `cfg` is
        // (repr(C), the kernel's layout) and outlives the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok((path, dev));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(err);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}
