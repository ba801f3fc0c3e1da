//! What the kernel has mounted: `/proc/self/mountinfo`, and detaching a mount.

use std::fs;
use std::path::Path;

use crate::store::error::{Error, Result};

/// Is a file system whose type starts with `fstype` mounted at `p`? Used to find
/// a dead daemon's FUSE mount ("transport endpoint is not connected"): a stat
/// cannot tell, the kernel may answer it from its attribute cache.
pub fn is_mounted_at(p: &Path, fstype: &str) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.as_os_str().as_encoded_bytes();
    info.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        let t = f.get(sep + 1).copied().unwrap_or("");
        t.starts_with(fstype) && f.get(4).is_some_and(|m| unescape(m) == want)
    })
}

/// The mount point of the (first) mount whose source is `source`.
pub fn find_source(source: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        if unescape(f.get(sep + 2)?) != source.as_bytes() {
            return None;
        }
        Some(std::path::PathBuf::from(std::ffi::OsString::from_vec(
            unescape(f.get(4)?),
        )))
    })
}

/// A process whose mount namespace (possibly not ours) has a mount with
/// source `source`, and where it is mounted there: `(pid, mount point)`.
/// Each namespace is read once.
pub fn find_source_in_any_namespace(source: &str) -> Option<(u32, std::path::PathBuf)> {
    use std::os::unix::ffi::OsStringExt;
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
        for line in info.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let Some(sep) = f.iter().position(|x| *x == "-") else {
                continue;
            };
            if f.get(sep + 2)
                .is_some_and(|s| unescape(s) == source.as_bytes())
            {
                let mnt = f.get(4).map(|m| unescape(m)).unwrap_or_default();
                return Some((
                    pid,
                    std::path::PathBuf::from(std::ffi::OsString::from_vec(mnt)),
                ));
            }
        }
    }
    None
}

/// The super options (last field) of the mount whose source is `source`.
pub fn options_of(source: &str) -> Option<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        if unescape(f.get(sep + 2)?) != source.as_bytes() {
            return None;
        }
        let opts = unescape(f.get(sep + 3)?);
        Some(String::from_utf8_lossy(&opts).into_owned())
    })
}

/// Whether any mount's super options contain `needle` (as one option).
pub fn any_options_contain(needle: &str) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else {
            return false;
        };
        f.get(sep + 3).is_some_and(|o| {
            String::from_utf8_lossy(&unescape(o))
                .split(',')
                .any(|x| x == needle)
        })
    })
}

/// Every mount of this mount namespace: (source, mount point), in mount
/// order (a later one is on top of an earlier one at the same point).
pub fn mounts() -> Vec<(Vec<u8>, std::path::PathBuf)> {
    use std::os::unix::ffi::OsStringExt;
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let source = unescape(f.get(sep + 2)?);
            let mnt = std::path::PathBuf::from(std::ffi::OsString::from_vec(unescape(f.get(4)?)));
            Some((source, mnt))
        })
        .collect()
}

/// The source of the topmost mount at `p`, if anything is mounted there.
pub fn top_source_at(p: &Path) -> Option<Vec<u8>> {
    mounts()
        .into_iter()
        .rev()
        .find(|(_, m)| m == p)
        .map(|(s, _)| s)
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
