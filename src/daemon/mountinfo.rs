//! What the kernel has mounted: `/proc/self/mountinfo`, and detaching a mount.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::store::error::{Error, Result};

/// One line of a mountinfo table, unescaped.
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub source: Vec<u8>,
    /// The super options (`rw,lowerdir+=...`).
    pub options: String,
}

/// The mounts of a mountinfo table, in mount order (a later one is on top of
/// an earlier one at the same point).
fn parse(info: &str) -> impl Iterator<Item = Mount> + '_ {
    info.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        Some(Mount {
            point: PathBuf::from(OsString::from_vec(unescape(f.get(4)?))),
            fstype: (*f.get(sep + 1)?).to_string(),
            source: unescape(f.get(sep + 2)?),
            options: String::from_utf8_lossy(&unescape(f.get(sep + 3).unwrap_or(&""))).into_owned(),
        })
    })
}

/// The mounts of this process's mount namespace (none if it cannot be read).
pub fn table() -> Vec<Mount> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|info| parse(&info).collect())
        .unwrap_or_default()
}

/// Is a file system whose type starts with `fstype` mounted at `p`? Used to find
/// a dead daemon's FUSE mount ("transport endpoint is not connected"): a stat
/// cannot tell, the kernel may answer it from its attribute cache.
pub fn is_mounted_at(p: &Path, fstype: &str) -> bool {
    table()
        .iter()
        .any(|m| m.fstype.starts_with(fstype) && m.point == p)
}

/// The mount point of the (first) mount whose source is `source`.
pub fn find_source(source: &str) -> Option<PathBuf> {
    table()
        .into_iter()
        .find(|m| m.source == source.as_bytes())
        .map(|m| m.point)
}

/// A process whose mount namespace (possibly not ours) has a mount with
/// source `source`, and where it is mounted there: `(pid, mount point)`.
/// Each namespace is read once.
pub fn find_source_in_any_namespace(source: &str) -> Option<(u32, PathBuf)> {
    let mut seen = std::collections::HashSet::new();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        if let Some(m) = parse(&info).find(|m| m.source == source.as_bytes()) {
            return Some((pid, m.point));
        }
    }
    None
}

/// The super options of the mount whose source is `source`.
pub fn options_of(source: &str) -> Option<String> {
    table()
        .into_iter()
        .find(|m| m.source == source.as_bytes())
        .map(|m| m.options)
}

/// Whether any mount's super options contain `needle` (as one option).
pub fn any_options_contain(needle: &str) -> bool {
    table()
        .iter()
        .any(|m| m.options.split(',').any(|x| x == needle))
}

/// The source of the topmost mount at `p`, if anything is mounted there.
pub fn top_source_at(p: &Path) -> Option<Vec<u8>> {
    table()
        .into_iter()
        .rev()
        .find(|m| m.point == p)
        .map(|m| m.source)
}

/// Undo mountinfo's octal escapes (`\040` for a space...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Lazily detach whatever is mounted at `p` (MNT_DETACH).
pub fn detach(p: &Path) -> Result<()> {
    rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
        Error::UmountFailed {
            path: p.to_path_buf(),
            reason: format!("detaching a stale mount: {e}"),
        }
    })
}

/// Unmount `p` (no flags: fails with EBUSY while it is in use).
pub fn unmount(p: &Path) -> Result<()> {
    rustix::mount::unmount(p, rustix::mount::UnmountFlags::empty()).map_err(|e| {
        Error::UmountFailed {
            path: p.to_path_buf(),
            reason: std::io::Error::from(e).to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn octal_escapes() {
        assert_eq!(super::unescape(r"/a\040b\134c"), b"/a b\\c".to_vec());
        assert_eq!(super::unescape(r"/x\04"), b"/x\\04".to_vec());
    }
}
