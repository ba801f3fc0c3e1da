//! The inodes of a base manifest. Numbering: a manifest entry's index + 1, so
//! the root is 1 and the names of a hardlink group share their leader's number.

use crate::container::inode::{Content, Ino, InodeAttrs, Node, ROOT, Time};
use crate::container::table::{FastMap, NodeTable};
use crate::store::manifest::{Kind, Manifest};

/// Build the inode table of `m`. Consumes the manifest so that names, targets
/// and xattrs move instead of being copied: this runs on every mount and
/// dominates the mount time of large templates. Entries whose parent directory
/// is missing (a malformed manifest) are left out.
pub(crate) fn base_nodes(m: Manifest) -> NodeTable<Node> {
    let leaders = m.link_leaders();
    let mut nodes: NodeTable<Node> = NodeTable::with_base_len(m.entries.len());
    let mut dirs: FastMap<Vec<u8>, Ino> = FastMap::default();
    for (i, e) in m.entries.into_iter().enumerate() {
        let is_root = e.path.is_empty();
        let slash = e.path.iter().rposition(|&b| b == b'/');
        let parent = if is_root {
            ROOT
        } else {
            let parent_path = slash.map_or(&b""[..], |p| &e.path[..p]);
            match dirs.get(parent_path) {
                Some(&p) => p,
                None => continue,
            }
        };
        let ino = match leaders.get(&e.link_group) {
            Some(&leader) if e.link_group != 0 => leader as Ino + 1,
            _ => i as Ino + 1,
        };
        if e.kind == Kind::Dir {
            dirs.insert(e.path.clone(), ino);
            if let Some(p) = nodes.get_mut(&parent).filter(|_| !is_root) {
                p.attrs.nlink += 1;
            }
        }
        match nodes.get_mut(&ino) {
            Some(n) => n.attrs.nlink += 1, // another name of a hardlink group
            None => {
                let t = Time {
                    sec: e.mtime_sec,
                    nsec: e.mtime_nsec,
                };
                let content = match e.kind {
                    Kind::File => e.hash.map_or(Content::None, Content::Shared),
                    Kind::Symlink => Content::Symlink(e.target),
                    _ => Content::None,
                };
                let attrs = InodeAttrs {
                    kind: e.kind,
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    size: e.size,
                    nlink: if e.kind == Kind::Dir { 2 } else { 1 },
                    rdev: e.rdev,
                    atime: t,
                    mtime: t,
                    ctime: t,
                    xattrs: e.xattrs.into_iter().collect(),
                    content,
                    parent,
                };
                nodes.insert(ino, Node::new(attrs));
            }
        }
        if !is_root {
            let mut name = e.path;
            if let Some(p) = slash {
                name.drain(..=p);
            }
            if let Some(pn) = nodes.get_mut(&parent) {
                pn.children.insert(name, ino);
            }
        }
    }
    nodes
}
