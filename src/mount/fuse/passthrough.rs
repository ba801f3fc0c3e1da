//! FUSE passthrough (Linux 6.9+, CAP_SYS_ADMIN): the kernel reads, writes and maps
//! a handle's backing file itself, so every container reading an object shares
//! its page cache and no read reaches the daemon.
//!
//! The kernel allows one backing file per inode at a time (`fs/fuse/iomode.c`):
//! while any handle of an inode is open with a backing id, every open of that
//! inode must be a passthrough open naming the same backing file; anything else
//! fails with EIO. So one id per inode is kept while handles hold it, and it is
//! reused even after passthrough was turned off for new inodes. A write open of
//! a shared file whose object is the live backing of read-only handles cannot be
//! served (its copy would be a second backing file): it is refused with ETXTBSY
//! until those handles close.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use fuser::BackingId;

/// The daemon's passthrough state.
#[derive(Default)]
pub(crate) struct Passthrough {
    enabled: AtomicBool,
    /// inode -> (its live backing id, whether that is the private file).
    by_inode: Mutex<HashMap<u64, (Weak<BackingId>, bool)>>,
}

impl Passthrough {
    /// Turn passthrough on (the kernel granted it at init) or off.
    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// The backing id for an open of `ino` whose content is `file`: a live one
    /// of the inode if there is one, else `file` registered with the kernel.
    /// `None` when passthrough is off; the first failure to register turns it
    /// off for the mount (logged once) and the daemon serves reads from then on.
    pub(crate) fn backing_id(
        &self,
        ino: u64,
        private: bool,
        file: &File,
        register: impl FnOnce(&File) -> std::io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        let mut map = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, _)) = map
            .get(&ino)
            .and_then(|(w, p)| Some((w.upgrade()?, *p)))
            .filter(|(_, p)| *p == private)
        {
            return Some(id);
        }
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        match register(file) {
            Ok(id) => {
                let id = Arc::new(id);
                if map.len() > 1024 {
                    map.retain(|_, (w, _)| w.strong_count() > 0);
                }
                map.insert(ino, (Arc::downgrade(&id), private));
                Some(id)
            }
            Err(e) => {
                self.enabled.store(false, Ordering::Relaxed);
                log::warn!(
                    "FUSE passthrough failed ({e}); reads and writes are served by the daemon from now on"
                );
                None
            }
        }
    }
}

impl Passthrough {
    /// Whether handles of `ino` hold a shared object as their backing file (so
    /// the inode cannot be copied up while they are open).
    pub(crate) fn object_backing_live(&self, ino: u64) -> bool {
        let map = self.by_inode.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ino)
            .is_some_and(|(w, private)| !private && w.strong_count() > 0)
    }
}
