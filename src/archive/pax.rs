//! pax extended headers (POSIX.1-2001): `LEN KEY=VALUE\n` records. Parsing
//! keeps what a template needs (path, linkpath, size, ids, mtime with
//! nanoseconds, devices, xattrs in the SCHILY and LIBARCHIVE spellings, the
//! SELinux label GNU tar writes, GNU sparse keys); encoding writes records
//! for the writer.

use base64::Engine;

/// Linux's limit on the list of one inode's xattr names.
const XATTR_LIST_MAX: usize = 65536;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// libarchive writes xattr values in base64, with or without padding.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What one extended header (or the global ones) set. `None`/empty: not set.
#[derive(Clone, Debug, Default)]
pub(super) struct PaxExt {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<(i64, u32)>,
    pub devmajor: Option<u32>,
    pub devminor: Option<u32>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Position of each name in `xattrs`, and the bytes of the names.
    xattr_index: std::collections::HashMap<Vec<u8>, usize>,
    xattr_names: usize,
    /// GNU sparse keys (0.0 pairs, 0.1 map, 1.0 version and sizes).
    pub sparse: SparseKeys,
}

#[derive(Clone, Debug, Default)]
pub(super) struct SparseKeys {
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub name: Option<Vec<u8>>,
    pub realsize: Option<u64>,
    /// 0.0: `GNU.sparse.offset`/`numbytes` pairs; 0.1: `GNU.sparse.map`.
    pub map: Vec<u64>,
    pub any: bool,
}

impl PaxExt {
    /// Records of `data` applied over `self` (later records win).
    pub fn parse(&mut self, mut data: &[u8]) -> Result<(), String> {
        while !data.is_empty() {
            if data.iter().all(|&b| b == 0) {
                break;
            }
            let sp = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or("a record without a length")?;
            let len: usize = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("a record length that is not a number")?;
            if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err("a record length that does not match its record".into());
            }
            let rec = &data[sp + 1..len - 1];
            let eq = rec
                .iter()
                .position(|&b| b == b'=')
                .ok_or("a record without '='")?;
            self.apply(&rec[..eq], &rec[eq + 1..])?;
            data = &data[len..];
        }
        Ok(())
    }

    fn apply(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let key_s = String::from_utf8_lossy(key);
        let num = |v: &[u8]| -> Result<u64, String> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("{key_s}: {:?} is not a number", String::from_utf8_lossy(v)))
        };
        let small = |v: &[u8]| -> Result<u32, String> {
            u32::try_from(num(v)?).map_err(|_| format!("{key_s}: out of range"))
        };
        match key {
            b"path" => self.path = Some(value.to_vec()),
            b"linkpath" => self.linkpath = Some(value.to_vec()),
            b"size" => self.size = Some(num(value)?),
            b"uid" => self.uid = Some(small(value)?),
            b"gid" => self.gid = Some(small(value)?),
            b"mtime" => {
                self.mtime = Some(parse_time(value).ok_or(format!(
                    "mtime: {:?} is not a time",
                    String::from_utf8_lossy(value)
                ))?)
            }
            b"SCHILY.devmajor" => self.devmajor = Some(small(value)?),
            b"SCHILY.devminor" => self.devminor = Some(small(value)?),
            b"RHT.security.selinux" => self.set_xattr(b"security.selinux", value)?,
            b"GNU.sparse.major" => self.sparse_mut().major = Some(small(value)?),
            b"GNU.sparse.minor" => self.sparse_mut().minor = Some(small(value)?),
            b"GNU.sparse.name" => self.sparse_mut().name = Some(value.to_vec()),
            b"GNU.sparse.realsize" | b"GNU.sparse.size" => {
                self.sparse_mut().realsize = Some(num(value)?)
            }
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let v = num(value)?;
                self.sparse_mut().map.push(v);
            }
            b"GNU.sparse.map" => {
                let s = self.sparse_mut();
                s.map.clear();
                for part in value.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                    s.map.push(num(part)?);
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    self.set_xattr(name, value)?;
                } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                    let name = url_decode(name);
                    let v = B64
                        .decode(value.trim_ascii())
                        .map_err(|e| format!("{key_s}: bad base64 value: {e}"))?;
                    self.set_xattr(&name, &v)?;
                }
                // Anything else (atime, ctime, uname, gname, charset, comment,
                // vendor keys) does not describe a template's tree.
            }
        }
        Ok(())
    }

    fn sparse_mut(&mut self) -> &mut SparseKeys {
        self.sparse.any = true;
        &mut self.sparse
    }

    /// Set an xattr (a later record of the same name wins). Names are kept
    /// in a map, and more than 64 KiB of them (Linux's limit for one inode)
    /// is refused at once, so no record count costs more than linear time.
    fn set_xattr(&mut self, name: &[u8], value: &[u8]) -> Result<(), String> {
        match self.xattr_index.get(name) {
            Some(&i) => self.xattrs[i].1 = value.to_vec(),
            None => {
                self.xattr_names += name.len() + 1;
                if self.xattr_names > XATTR_LIST_MAX {
                    return Err(format!(
                        "more than {XATTR_LIST_MAX} bytes of xattr names for one member"
                    ));
                }
                self.xattr_index.insert(name.to_vec(), self.xattrs.len());
                self.xattrs.push((name.to_vec(), value.to_vec()));
            }
        }
        Ok(())
    }

    /// `other`'s values over `self`'s (global headers under a member's own).
    pub fn overlay_xattrs(&mut self, other: &PaxExt) -> Result<(), String> {
        for (n, v) in &other.xattrs {
            self.set_xattr(n, v)?;
        }
        Ok(())
    }
}

/// `SEC[.FRAC]`, possibly negative, to (seconds, nanoseconds) with the
/// nanoseconds counted forward (so -1.5 is (-2, 500000000)).
fn parse_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    if sec.is_empty()
        || !sec.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let sec: i64 = sec.parse().ok()?;
    let mut ns: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        ns += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some((sec, ns));
    }
    if ns == 0 {
        Some((-sec, 0))
    } else {
        Some((-sec - 1, 1_000_000_000 - ns))
    }
}

fn url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if s[i] == b'%'
            && let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Append one record `LEN KEY=VALUE\n` to `out` (LEN counts itself).
pub(super) fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut data = Vec::new();
        record(&mut data, b"path", b"a/very/long/name");
        record(&mut data, b"mtime", b"1700000000.123456789");
        record(&mut data, b"SCHILY.xattr.user.x", b"v\n=\0w");
        record(&mut data, b"LIBARCHIVE.xattr.user.%79", b"dg==");
        let mut p = PaxExt::default();
        p.parse(&data).unwrap();
        assert_eq!(p.path.as_deref(), Some(&b"a/very/long/name"[..]));
        assert_eq!(p.mtime, Some((1_700_000_000, 123_456_789)));
        assert_eq!(p.xattrs[0], (b"user.x".to_vec(), b"v\n=\0w".to_vec()));
        assert_eq!(p.xattrs[1], (b"user.y".to_vec(), b"v".to_vec()));
    }

    #[test]
    fn record_length_counts_itself() {
        for n in 0..300 {
            let mut out = Vec::new();
            record(&mut out, b"k", &vec![b'x'; n]);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len());
        }
    }

    #[test]
    fn times_and_bad_records() {
        assert_eq!(parse_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_time(b"12"), Some((12, 0)));
        assert_eq!(parse_time(b"1x"), None);
        let mut p = PaxExt::default();
        assert!(p.parse(b"99 path=x\n").is_err());
        assert!(p.parse(b"x path=x\n").is_err());
        assert!(p.parse(b"9 pathx\n").is_err());
    }
}
