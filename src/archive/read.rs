//! A streaming tar reader: one member at a time, its data read in pieces, no
//! seeking, nothing buffered beyond one extended header. Reads ustar, GNU
//! (long names and links, old sparse headers) and pax (local and global
//! headers, long names, nanosecond times, xattrs, sparse 0.0, 0.1 and 1.0).
//!
//! Contract: every number is checked before use, every member's name is
//! returned as the archive spells it (the caller decides what a safe path
//! is), a sparse member's map is validated against its stored data, and an
//! archive that ends anywhere but after its end-of-archive block is an error.

use std::io::{ErrorKind, Read};

use super::header::{self, Block, at};
use super::pax::PaxExt;
use super::sparse;
use super::{BLOCK, TarError, padded};

/// Largest pax extended header taken into memory.
const MAX_PAX: u64 = 64 << 20;
/// Largest GNU long name or link target.
const MAX_LONG: u64 = 1 << 20;

/// What a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    File,
    Dir,
    Symlink,
    /// A second name of an earlier member (`link` names it).
    Hardlink,
    CharDev,
    BlockDev,
    Fifo,
}

/// One member's header, with every extension applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The name as the archive gives it (may be absolute or hold `..`).
    pub name: Vec<u8>,
    pub kind: MemberKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    /// Logical size of a regular file (the real size of a sparse one).
    pub size: u64,
    /// Symlink target, or the name a hardlink refers to.
    pub link: Vec<u8>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes in archive order (later duplicates removed).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a sparse file: its data segments (offset, length); the stored data
    /// is these segments back to back.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Byte offset of the member's header in the uncompressed archive.
    pub offset: u64,
}

impl Member {
    /// The name for messages.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Reads members from an uncompressed tar stream.
pub struct TarReader<R> {
    r: R,
    /// Bytes consumed so far.
    pos: u64,
    /// Stored data bytes of the current member not read yet.
    left: u64,
    /// Padding after the current member's data.
    pad: u64,
    global: PaxExt,
    /// Header offset and name of the current member, for messages.
    current: (u64, String),
    ended: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(r: R) -> TarReader<R> {
        TarReader {
            r,
            pos: 0,
            left: 0,
            pad: 0,
            global: PaxExt::default(),
            current: (0, String::new()),
            ended: false,
        }
    }

    /// The input, positioned after the end-of-archive block.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Bytes of the uncompressed archive consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Fill `buf`; returns the bytes read (less than asked only at the end).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(unwrap_bomb(e)),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// The next block; `None` at a clean end of input.
    fn block(&mut self, what: &str) -> Result<Option<Block>, TarError> {
        let start = self.pos;
        let mut b = [0u8; BLOCK as usize];
        match self.fill(&mut b)? {
            0 => Ok(None),
            n if n < b.len() => Err(TarError::Truncated {
                offset: start,
                what: what.to_string(),
            }),
            _ => Ok(Some(b)),
        }
    }

    /// Discard `n` bytes of the current member.
    fn skip(&mut self, mut n: u64) -> Result<(), TarError> {
        let mut buf = [0u8; 64 * 1024];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            let got = self.fill(&mut buf[..want])?;
            if got < want {
                return Err(self.truncated());
            }
            n -= got as u64;
        }
        Ok(())
    }

    fn truncated(&self) -> TarError {
        TarError::Truncated {
            offset: self.current.0,
            what: format!("the data of member {:?}", self.current.1),
        }
    }

    /// Read a whole extension member's data (`size` bytes plus padding).
    fn extension(&mut self, size: u64, limit: u64, offset: u64) -> Result<Vec<u8>, TarError> {
        if size > limit {
            return Err(TarError::Header {
                offset,
                reason: format!("an extended header of {size} bytes (at most {limit} taken)"),
            });
        }
        let mut data = vec![0u8; padded(size) as usize];
        if self.fill(&mut data)? < data.len() {
            return Err(TarError::Truncated {
                offset,
                what: "an extended header".into(),
            });
        }
        data.truncate(size as usize);
        Ok(data)
    }

    /// Read up to `buf.len()` bytes of the current member's stored data;
    /// 0 when it is all read. A sparse member yields its segments back to back.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let want = (self.left.min(buf.len() as u64)) as usize;
        if want == 0 {
            return Ok(0);
        }
        let got = self.fill(&mut buf[..want])?;
        if got < want {
            return Err(self.truncated());
        }
        self.left -= got as u64;
        Ok(got)
    }

    /// The next member, or `None` after the end-of-archive block. Data the
    /// caller did not read of the previous member is skipped.
    pub fn next_member(&mut self) -> Result<Option<Member>, TarError> {
        if self.ended {
            return Ok(None);
        }
        let rest = self.left + self.pad;
        self.skip(rest)?;
        self.left = 0;
        self.pad = 0;
        let mut local = PaxExt::default();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut extended = false;
        let (h, offset) = loop {
            let offset = self.pos;
            let Some(h) = self.block("a header")? else {
                return Err(TarError::Truncated {
                    offset,
                    what: "the archive: no end-of-archive block".into(),
                });
            };
            if header::is_zero(&h) {
                if extended {
                    return Err(TarError::Header {
                        offset,
                        reason: "an extended header with no member after it".into(),
                    });
                }
                self.ended = true;
                return Ok(None);
            }
            if !header::checksum_ok(&h) {
                return Err(TarError::Checksum { offset });
            }
            let bad = |reason: String| TarError::Header { offset, reason };
            let size = header::number(&h, at::SIZE).map_err(bad)?;
            let size = u64::try_from(size).map_err(|_| bad("a negative size".into()))?;
            match h[at::TYPE] {
                b'x' => {
                    let data = self.extension(size, MAX_PAX, offset)?;
                    local.parse(&data).map_err(bad)?;
                }
                b'g' => {
                    let data = self.extension(size, MAX_PAX, offset)?;
                    self.global.parse(&data).map_err(bad)?;
                    continue;
                }
                b'L' => long_name = Some(trim_nul(self.extension(size, MAX_LONG, offset)?)),
                b'K' => long_link = Some(trim_nul(self.extension(size, MAX_LONG, offset)?)),
                b'V' => {
                    self.skip(padded(size))?;
                    continue;
                }
                _ => break (h, offset),
            }
            extended = true;
        };
        self.member(&h, offset, local, long_name, long_link)
    }

    fn member(
        &mut self,
        h: &Block,
        offset: u64,
        local: PaxExt,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Option<Member>, TarError> {
        let bad = |reason: String| TarError::Header { offset, reason };
        let ext = merge(&self.global, local).map_err(bad)?;
        let ustar = &h[at::MAGIC.0..at::MAGIC.0 + 6] == b"ustar\0";
        let mut name = match (ext.path.clone(), long_name) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => {
                let base = header::text(h, at::NAME);
                let prefix = if ustar {
                    header::text(h, at::PREFIX)
                } else {
                    b""
                };
                if prefix.is_empty() {
                    base.to_vec()
                } else {
                    [prefix, b"/", base].concat()
                }
            }
        };
        let link = ext
            .linkpath
            .clone()
            .or(long_link)
            .unwrap_or_else(|| header::text(h, at::LINK).to_vec());
        let typ = h[at::TYPE];
        let kind = match typ {
            b'0' | b'7' | b'S' => MemberKind::File,
            0 if name.ends_with(b"/") => MemberKind::Dir,
            0 => MemberKind::File,
            b'1' => MemberKind::Hardlink,
            b'2' => MemberKind::Symlink,
            b'3' => MemberKind::CharDev,
            b'4' => MemberKind::BlockDev,
            b'5' | b'D' => MemberKind::Dir,
            b'6' => MemberKind::Fifo,
            b'M' => {
                return Err(self.refuse(
                    offset,
                    &name,
                    "a multi-volume continuation is not supported",
                ));
            }
            other => {
                return Err(self.refuse(
                    offset,
                    &name,
                    &format!("member type {:?} is not supported", other as char),
                ));
            }
        };
        let num = |f| header::number(h, f).map_err(bad);
        let stored = match ext.size {
            Some(s) => s,
            None => u64::try_from(num(at::SIZE)?).map_err(|_| bad("a negative size".into()))?,
        };
        let id = |v: Option<u32>, f| -> Result<u32, TarError> {
            match v {
                Some(v) => Ok(v),
                None => u32::try_from(num(f)?).map_err(|_| bad("an owner id out of range".into())),
            }
        };
        let (mtime_sec, mtime_nsec) = match ext.mtime {
            Some(t) => t,
            None => (num(at::MTIME)?, 0),
        };
        let dev = |v: Option<u32>, f| -> Result<u32, TarError> {
            match v {
                Some(v) => Ok(v),
                None if matches!(kind, MemberKind::CharDev | MemberKind::BlockDev) => {
                    u32::try_from(num(f)?).map_err(|_| bad("a device number out of range".into()))
                }
                None => Ok(0),
            }
        };
        let mut m = Member {
            kind,
            mode: (num(at::MODE)? & 0o7777) as u32,
            uid: id(ext.uid, at::UID)?,
            gid: id(ext.gid, at::GID)?,
            mtime_sec,
            mtime_nsec,
            size: 0,
            link,
            dev_major: dev(ext.devmajor, at::DEVMAJOR)?,
            dev_minor: dev(ext.devminor, at::DEVMINOR)?,
            xattrs: ext.xattrs.clone(),
            sparse: None,
            offset,
            name: Vec::new(),
        };
        self.left = stored;
        self.pad = padded(stored) - stored;
        if typ == b'S' {
            let map = self.old_gnu_map(h, offset)?;
            let realsize =
                u64::try_from(num(at::GNU_REALSIZE)?).map_err(|_| bad("a negative size".into()))?;
            sparse::validate(&map, realsize, stored).map_err(|r| self.refuse(offset, &name, &r))?;
            m.size = realsize;
            m.sparse = Some(map);
        } else if ext.sparse.any && kind == MemberKind::File {
            let s = &ext.sparse;
            if let Some(real) = &s.name {
                name = real.clone();
            }
            let realsize = s.realsize.ok_or_else(|| {
                self.refuse(offset, &name, "a sparse member without its real size")
            })?;
            let map = match (s.major, s.minor) {
                (Some(1), Some(0)) => self.v1_map(offset, &name)?,
                (None | Some(0), _) => {
                    sparse::pairs(&s.map).map_err(|r| self.refuse(offset, &name, &r))?
                }
                _ => return Err(self.refuse(offset, &name, "an unknown sparse format version")),
            };
            sparse::validate(&map, realsize, self.left)
                .map_err(|r| self.refuse(offset, &name, &r))?;
            m.size = realsize;
            m.sparse = Some(map);
        } else if kind == MemberKind::File {
            m.size = stored;
        }
        if kind != MemberKind::File {
            // Data of other kinds (a GNU dumpdir, a pax hardlink's copy) is
            // not part of the tree; it is skipped with the padding.
            self.pad += self.left;
            self.left = 0;
        }
        m.name = name;
        self.current = (offset, m.display_name());
        Ok(Some(m))
    }

    fn refuse(&self, offset: u64, name: &[u8], reason: &str) -> TarError {
        TarError::Member {
            offset,
            name: String::from_utf8_lossy(name).into_owned(),
            reason: reason.to_string(),
        }
    }

    /// The old GNU sparse map: four pairs in the header, 21 per extension
    /// block after it.
    fn old_gnu_map(&mut self, h: &Block, offset: u64) -> Result<Vec<(u64, u64)>, TarError> {
        let bad = |reason: String| TarError::Header { offset, reason };
        let mut map = Vec::new();
        let take = |b: &[u8], count: usize, map: &mut Vec<(u64, u64)>| -> Result<(), TarError> {
            for i in 0..count {
                let e = &b[i * 24..i * 24 + 24];
                if e[0] == 0 {
                    break;
                }
                let o = header::number_bytes(&e[..12]).map_err(bad)?;
                let l = header::number_bytes(&e[12..]).map_err(bad)?;
                let (Ok(o), Ok(l)) = (u64::try_from(o), u64::try_from(l)) else {
                    return Err(bad("a negative sparse offset".into()));
                };
                map.push((o, l));
            }
            Ok(())
        };
        take(&h[at::GNU_SPARSE..], 4, &mut map)?;
        let mut extended = h[at::GNU_ISEXTENDED] != 0;
        let mut blocks = 0;
        while extended {
            blocks += 1;
            if blocks > 50_000 {
                return Err(bad("a sparse map of more than 50000 blocks".into()));
            }
            let b = self
                .block("a sparse map")?
                .ok_or_else(|| TarError::Truncated {
                    offset,
                    what: "a sparse map".into(),
                })?;
            take(&b[..], 21, &mut map)?;
            extended = b[504] != 0;
        }
        Ok(map)
    }

    /// The 1.0 map at the start of the member's stored data.
    fn v1_map(&mut self, offset: u64, name: &[u8]) -> Result<Vec<(u64, u64)>, TarError> {
        let mut buf = Vec::new();
        loop {
            if self.left < BLOCK || buf.len() >= 16 << 20 {
                return Err(self.refuse(offset, name, "a sparse map that does not fit its member"));
            }
            let b = self
                .block("a sparse map")?
                .ok_or_else(|| self.truncated())?;
            self.left -= BLOCK;
            buf.extend_from_slice(&b);
            match sparse::parse_v1(&buf).map_err(|r| self.refuse(offset, name, &r))? {
                Some((map, used)) if used == buf.len() => return Ok(map),
                Some(_) => {
                    return Err(self.refuse(offset, name, "a sparse map with trailing bytes"));
                }
                None => {}
            }
        }
    }
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Global extended headers overlaid by the member's own.
fn merge(global: &PaxExt, local: PaxExt) -> Result<PaxExt, String> {
    let mut out = global.clone();
    out.overlay_xattrs(&local)?;
    out.path = local.path.or(out.path);
    out.linkpath = local.linkpath.or(out.linkpath);
    out.size = local.size.or(out.size);
    out.uid = local.uid.or(out.uid);
    out.gid = local.gid.or(out.gid);
    out.mtime = local.mtime.or(out.mtime);
    out.devmajor = local.devmajor.or(out.devmajor);
    out.devminor = local.devminor.or(out.devminor);
    out.sparse = local.sparse;
    Ok(out)
}

/// A decompression bomb is reported through `io::Error`; take it back out.
fn unwrap_bomb(e: std::io::Error) -> TarError {
    if e.get_ref()
        .is_some_and(|r| r.is::<super::compress::BombError>())
    {
        return TarError::Bomb(e.to_string());
    }
    TarError::Io(e)
}

#[cfg(test)]
mod tests {
    use super::super::write::TarWriter;
    use super::*;
    use proptest::prelude::*;

    fn member(name: Vec<u8>, kind: MemberKind, size: u64) -> Member {
        Member {
            name,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 1,
            mtime_nsec: 0,
            size,
            link: b"target".to_vec(),
            dev_major: 1,
            dev_minor: 3,
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
            sparse: None,
            offset: 0,
        }
    }

    /// A small valid archive from arbitrary names and sizes.
    fn archive(members: &[(Vec<u8>, u8, u16)]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (name, kind, size) in members {
            let kind = [
                MemberKind::File,
                MemberKind::Dir,
                MemberKind::Symlink,
                MemberKind::Hardlink,
            ][*kind as usize % 4];
            let size = if kind == MemberKind::File {
                u64::from(*size)
            } else {
                0
            };
            let mut m = member(name.clone(), kind, size);
            if size > 100 && name.len() % 2 == 0 {
                m.sparse = Some(vec![(0, 10), (size - 10, 10)]);
            }
            let want = w.begin(&m).unwrap();
            w.data(&vec![7u8; want as usize]).unwrap();
            w.end_member().unwrap();
        }
        w.finish().unwrap()
    }

    /// Read everything; errors are fine, panics and runaway allocations are not.
    fn read_all(data: &[u8]) -> Result<Vec<Member>, TarError> {
        let mut r = TarReader::new(data);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(m) = r.next_member()? {
            while r.read_data(&mut buf)? > 0 {}
            out.push(m);
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn written_archives_read_back(members in prop::collection::vec(
            (prop::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..300), any::<u8>(), any::<u16>()), 0..8)) {
            let data = archive(&members);
            let got = read_all(&data).unwrap();
            prop_assert_eq!(got.len(), members.len());
            for (m, (name, _, _)) in got.iter().zip(&members) {
                let mut want = name.clone();
                if m.kind == MemberKind::Dir && !want.ends_with(b"/") {
                    want.push(b'/');
                }
                prop_assert_eq!(&m.name, &want);
            }
        }

        #[test]
        fn mutated_archives_never_panic(members in prop::collection::vec(
            (prop::collection::vec(b'a'..=b'z', 1..120), any::<u8>(), any::<u16>()), 1..6),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
            cut in any::<prop::sample::Index>()) {
            let mut data = archive(&members);
            for (at, byte) in flips {
                let i = at.index(data.len());
                data[i] = byte;
            }
            let _ = read_all(&data);
            let _ = read_all(&data[..cut.index(data.len())]);
        }

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..4096)) {
            let _ = read_all(&data);
        }
    }
}
