//! What a container's tree holds, computed from its base and its saved changes
//! without mounting it (read-only; fine while it is mounted).

use std::collections::HashMap;
use std::path::Path;

use crate::container::base::base_nodes;
use crate::container::inode::{Content, Ino, InodeAttrs};
use crate::container::journal::{self, Record};
use crate::store::Result;
use crate::store::manifest::{Kind, Manifest};
pub use crate::store::report::TreeUsage;

/// Usage of a container tree: `base` plus the records in `private_dir`.
pub fn usage(base: Manifest, private_dir: &Path) -> Result<TreeUsage> {
    let mut attrs: HashMap<Ino, InodeAttrs> = base_nodes(base)
        .into_nodes()
        .map(|(i, n)| (i, n.attrs))
        .collect();
    for r in journal::read_records(private_dir)? {
        match r {
            Record::Inode(i, a) => {
                attrs.insert(i, a);
            }
            Record::Drop(i) => {
                attrs.remove(&i);
            }
            _ => {}
        }
    }
    let mut u = TreeUsage::default();
    for a in attrs
        .values()
        .filter(|a| a.kind == Kind::File && a.nlink > 0)
    {
        u.logical_bytes += a.size;
        if let Content::Shared(_) = a.content {
            u.shared_bytes += a.size;
        }
    }
    Ok(u)
}
