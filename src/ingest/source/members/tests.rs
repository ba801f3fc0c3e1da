//! Property test: whatever an archive's names say, the member tree holds
//! only clean relative paths under directories.

use super::*;
use crate::archive::read::TarReader;
use crate::archive::write::TarWriter;
use proptest::prelude::*;

/// Names made of hostile pieces: `..`, `.`, empty parts, whiteouts.
fn name() -> impl Strategy<Value = Vec<u8>> {
    let part = prop::sample::select(vec![
        "a",
        "b",
        "..",
        ".",
        "",
        ".wh.a",
        ".wh..wh..opq",
        ".wh...",
        "c d",
    ]);
    (any::<bool>(), prop::collection::vec(part, 1..5)).prop_map(|(abs, parts)| {
        let mut s = if abs { "/".to_string() } else { String::new() };
        s.push_str(&parts.join("/"));
        s.into_bytes()
    })
}

fn members() -> impl Strategy<Value = Vec<(Vec<u8>, u8, Vec<u8>)>> {
    prop::collection::vec((name(), 0u8..6, name()), 1..20)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the archive says, the tree holds only clean relative
    /// paths under directories: nothing can name a place outside it.
    #[test]
    fn trees_stay_inside(ms in members(), layers in any::<bool>()) {
        let mut w = TarWriter::new(Vec::new());
        for (n, k, link) in &ms {
            let kind = [MemberKind::File, MemberKind::Dir, MemberKind::Symlink, MemberKind::Hardlink, MemberKind::Fifo, MemberKind::CharDev][*k as usize];
            let m = Member {
                name: n.clone(), kind, mode: 0o644, uid: 0, gid: 0, mtime_sec: 0, mtime_nsec: 0,
                size: 0, link: link.clone(), dev_major: 0, dev_minor: 0, xattrs: Vec::new(), sparse: None, offset: 0,
            };
            w.begin(&m).unwrap();
            w.end_member().unwrap();
        }
        let data = w.finish().unwrap();
        let mode = if layers { Mode::Layers } else { Mode::Archive };
        let mut tree = MemberTree::new(mode, "test".into());
        let mut r = TarReader::new(&data[..]);
        let hash = Hash::of(b"");
        while let Some(m) = r.next_member().unwrap() {
            if layers && m.name.len() % 3 == 0 {
                tree.next_layer();
            }
            let Ok(Place::Path(p)) = tree.place(&m) else { continue };
            let _ = tree.insert(p, &m, (m.kind == MemberKind::File).then_some(Content::Hash(hash)));
        }
        let (entries, _) = tree.finish(&[]);
        let mut dirs = std::collections::HashSet::new();
        for e in &entries {
            prop_assert!(!e.path.starts_with(b"/"));
            for c in e.path.split(|&b| b == b'/') {
                prop_assert!(e.path.is_empty() || (c != b".." && c != b"." && !c.is_empty()), "{:?}", String::from_utf8_lossy(&e.path));
            }
            if let Some((parent, _)) = crate::store::manifest::split_path(&e.path) {
                prop_assert!(dirs.contains(parent), "parent of {:?} is not a directory", String::from_utf8_lossy(&e.path));
            }
            if e.kind == Kind::Dir {
                dirs.insert(e.path.clone());
            }
        }
    }
}
