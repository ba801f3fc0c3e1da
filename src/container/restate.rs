//! A FUSE container's private area written afresh for a (new) base: the
//! snapshot that turns the base's inodes into a merged tree, and the data
//! files of its private inodes, hardlinked (never copied) from the old area.
//! Used by rebase and dedup; the result is installed by [`super::pending`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;

use crate::container::base::base_nodes;
use crate::container::inode::{Content, Ino, InodeAttrs, ROOT, Time};
use crate::container::journal::{self, Record};
use crate::container::view::{Pick, View};
use crate::store::Result;
use crate::store::error::IoContext;
use crate::store::fsutil;
use crate::store::manifest::{Kind, Manifest, split_path};

/// Write into `dest` (an empty directory) the snapshot, an empty journal and
/// `data/` of the tree `picks` (sorted by path, parents first: entries of
/// `new`, the base, or of `view`, the container's current tree) on base
/// `new`. Unchanged base inodes cost nothing; every other inode is one record.
/// Nothing is synced: the caller makes the area durable (`pending::seal_all`).
pub(crate) fn write_fuse_state(
    new: &Manifest,
    view: &View,
    picks: &[(Vec<u8>, Pick)],
    dest: &Path,
) -> Result<()> {
    let leaders = new.link_leaders();
    let base_ino = |i: usize| -> Ino {
        let g = new.entries[i].link_group;
        match leaders.get(&g) {
            Some(&l) if g != 0 => l as Ino + 1,
            _ => i as Ino + 1,
        }
    };
    let base = base_nodes(new.clone());
    let mut next: Ino = new.entries.len() as Ino + 1;
    let mut own: HashMap<u64, Ino> = HashMap::new();
    let mut attrs: BTreeMap<Ino, InodeAttrs> = BTreeMap::new();
    let mut children: BTreeMap<Ino, BTreeMap<Vec<u8>, Ino>> = BTreeMap::new();
    let mut by_path: HashMap<&[u8], Ino> = HashMap::new();
    let mut links: Vec<(&Path, Ino)> = Vec::new();
    for (path, pick) in picks {
        let (ino, fresh) = match *pick {
            // The root is inode 1 whatever its attributes (FUSE asks for it).
            _ if path.is_empty() => (ROOT, !attrs.contains_key(&ROOT)),
            Pick::Base(i) => {
                let ino = base_ino(i);
                (ino, !attrs.contains_key(&ino))
            }
            Pick::Own(j) => {
                let key = view.entries[j].inode;
                match own.get(&key) {
                    Some(&ino) if key != 0 => (ino, false),
                    _ => {
                        let ino = next;
                        next += 1;
                        own.insert(key, ino);
                        (ino, true)
                    }
                }
            }
        };
        if fresh {
            let mut a = match *pick {
                Pick::Base(_) => match base.get(&ino) {
                    Some(n) => n.attrs.clone(),
                    None => continue, // a base entry without a parent: not served
                },
                Pick::Own(j) => {
                    let v = &view.entries[j];
                    if let Some(p) = &v.private {
                        links.push((p.as_path(), ino));
                    }
                    own_attrs(v)
                }
            };
            a.nlink = if a.kind == Kind::Dir { 2 } else { 0 };
            attrs.insert(ino, a);
            if attrs[&ino].kind == Kind::Dir {
                children.insert(ino, BTreeMap::new());
            }
        }
        by_path.insert(path.as_slice(), ino);
        let kind = attrs[&ino].kind;
        match split_path(path) {
            None => {
                if let Some(a) = attrs.get_mut(&ino) {
                    a.parent = ROOT;
                }
            }
            Some((parent, name)) => {
                let Some(&pino) = by_path.get(parent) else {
                    continue;
                };
                if let Some(ch) = children.get_mut(&pino) {
                    ch.insert(name.to_vec(), ino);
                }
                if kind == Kind::Dir {
                    if let Some(pa) = attrs.get_mut(&pino) {
                        pa.nlink += 1;
                    }
                    if let Some(a) = attrs.get_mut(&ino) {
                        a.parent = pino;
                    }
                }
            }
        }
        if kind != Kind::Dir
            && let Some(a) = attrs.get_mut(&ino)
        {
            a.nlink += 1;
        }
    }
    let mut recs = vec![Record::NextIno(next)];
    for (&ino, a) in &attrs {
        let b = base.get(&ino);
        if b.is_none_or(|b| &b.attrs != a) {
            recs.push(Record::Inode(ino, a.clone()));
        }
        if let Some(ch) = children.get(&ino)
            && b.is_none_or(|b| &b.children != ch)
        {
            recs.push(Record::Children(ino, ch.clone()));
        }
    }
    for (ino, _) in base.iter() {
        if !attrs.contains_key(&ino) {
            recs.push(Record::Drop(ino));
        }
    }
    let data = dest.join("data");
    fsutil::create_private_dir(&data).at(&data)?;
    let mut linked = HashSet::new();
    for (src, ino) in links {
        if !linked.insert(ino) {
            continue;
        }
        let to = data.join(ino.to_string());
        match fs::hard_link(src, &to) {
            Ok(()) => {}
            // Lost before it was synced: a load would serve it empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::File::create(&to).at(&to)?;
            }
            Err(e) => return Err(e).at(&to),
        }
    }
    journal::write_state(dest, &recs)
}

/// Inode attributes of a container's entry taken over as it is.
fn own_attrs(v: &crate::container::view::ViewEntry) -> InodeAttrs {
    let e = &v.entry;
    let t = Time {
        sec: e.mtime_sec,
        nsec: e.mtime_nsec,
    };
    let content = match e.kind {
        Kind::File => match (&v.private, e.hash) {
            (Some(_), _) => Content::Private,
            (None, Some(h)) => Content::Shared(h),
            (None, None) => Content::Private,
        },
        Kind::Symlink => Content::Symlink(e.target.clone()),
        _ => Content::None,
    };
    InodeAttrs {
        kind: e.kind,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        nlink: 0,
        rdev: e.rdev,
        atime: t,
        mtime: t,
        ctime: t,
        xattrs: e.xattrs.iter().cloned().collect(),
        content,
        parent: ROOT,
    }
}
