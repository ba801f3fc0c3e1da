//! A streaming pax tar writer: a ustar header per member, preceded by a pax
//! extended header when something does not fit ustar (long names and link
//! targets, nanosecond or out-of-range times, large ids, sizes or device
//! numbers, xattrs). Sparse files use GNU's pax 1.0 format (the map at the
//! start of the data, the real name in `GNU.sparse.name`), which GNU tar and
//! bsdtar both restore with their holes.

use std::io::{self, Write};

use super::header::{self, Block, at};
use super::pax;
use super::read::{Member, MemberKind};
use super::sparse;
use super::{BLOCK, padded};

/// Writes members to `w`; [`TarWriter::finish`] writes the end blocks.
pub struct TarWriter<W: Write> {
    w: W,
    /// Stored bytes the current member still expects, and its padding.
    expect: u64,
    pad: u64,
    written: u64,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> TarWriter<W> {
        TarWriter {
            w,
            expect: 0,
            pad: 0,
            written: 0,
        }
    }

    /// Write the headers of `m`. A regular file's data follows through
    /// [`TarWriter::data`] or [`TarWriter::inner`]: `m.size` bytes, or for a
    /// sparse member (`m.sparse`) its segments back to back. Returns the
    /// stored bytes expected.
    pub fn begin(&mut self, m: &Member) -> io::Result<u64> {
        self.check_done()?;
        let mut h: Block = [0u8; BLOCK as usize];
        let mut ext = Vec::new();
        let mut name = m.name.clone();
        if m.kind == MemberKind::Dir && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let (typ, mut stored) = match m.kind {
            MemberKind::File => (b'0', m.size),
            MemberKind::Dir => (b'5', 0),
            MemberKind::Symlink => (b'2', 0),
            MemberKind::Hardlink => (b'1', 0),
            MemberKind::CharDev => (b'3', 0),
            MemberKind::BlockDev => (b'4', 0),
            MemberKind::Fifo => (b'6', 0),
        };
        let mut map_bytes = Vec::new();
        if let (MemberKind::File, Some(map)) = (m.kind, &m.sparse) {
            pax::record(&mut ext, b"GNU.sparse.major", b"1");
            pax::record(&mut ext, b"GNU.sparse.minor", b"0");
            pax::record(&mut ext, b"GNU.sparse.name", &m.name);
            pax::record(
                &mut ext,
                b"GNU.sparse.realsize",
                m.size.to_string().as_bytes(),
            );
            map_bytes = sparse::encode_v1(map);
            stored = map_bytes.len() as u64 + map.iter().map(|s| s.1).sum::<u64>();
            name = sparse_name(&m.name);
        }
        if name.len() > 100 {
            if std::str::from_utf8(&name).is_err() {
                pax::record(&mut ext, b"hdrcharset", b"BINARY");
            }
            pax::record(&mut ext, b"path", &name);
        }
        header::put_text(&mut h, at::NAME, &name[..name.len().min(100)]);
        if m.link.len() > 100 {
            pax::record(&mut ext, b"linkpath", &m.link);
        } else {
            header::put_text(&mut h, at::LINK, &m.link);
        }
        const MAX7: u64 = 0o7777777;
        for (key, v, field) in [(&b"uid"[..], m.uid, at::UID), (b"gid", m.gid, at::GID)] {
            if u64::from(v) > MAX7 {
                pax::record(&mut ext, key, v.to_string().as_bytes());
            }
            header::put_number(&mut h, field, u64::from(v).min(MAX7));
        }
        if m.mtime_nsec != 0 || m.mtime_sec < 0 || m.mtime_sec > 0o77777777777 {
            pax::record(
                &mut ext,
                b"mtime",
                format_time(m.mtime_sec, m.mtime_nsec).as_bytes(),
            );
        }
        header::put_number(
            &mut h,
            at::MTIME,
            m.mtime_sec.clamp(0, 0o77777777777) as u64,
        );
        if stored > 0o77777777777 {
            pax::record(&mut ext, b"size", stored.to_string().as_bytes());
        }
        header::put_number(&mut h, at::SIZE, stored);
        if matches!(m.kind, MemberKind::CharDev | MemberKind::BlockDev) {
            for (key, v, field) in [
                (&b"SCHILY.devmajor"[..], m.dev_major, at::DEVMAJOR),
                (b"SCHILY.devminor", m.dev_minor, at::DEVMINOR),
            ] {
                if u64::from(v) > MAX7 {
                    pax::record(&mut ext, key, v.to_string().as_bytes());
                }
                header::put_number(&mut h, field, u64::from(v).min(MAX7));
            }
        }
        for (n, v) in &m.xattrs {
            if n.contains(&b'=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: xattr name {:?} holds '=', which pax cannot carry",
                        m.display_name(),
                        String::from_utf8_lossy(n)
                    ),
                ));
            }
            pax::record(&mut ext, &[&b"SCHILY.xattr."[..], n].concat(), v);
        }
        header::put_number(&mut h, at::MODE, u64::from(m.mode & 0o7777));
        h[at::TYPE] = typ;
        h[at::MAGIC.0..at::MAGIC.0 + 8].copy_from_slice(b"ustar\x0000");
        header::seal(&mut h);
        if !ext.is_empty() {
            self.extended(&m.name, &ext)?;
        }
        self.w.write_all(&h)?;
        self.w.write_all(&map_bytes)?;
        self.expect = stored - map_bytes.len() as u64;
        self.pad = padded(stored) - stored;
        self.written = 0;
        Ok(self.expect)
    }

    fn extended(&mut self, name: &[u8], records: &[u8]) -> io::Result<()> {
        let mut h: Block = [0u8; BLOCK as usize];
        let base = name
            .rsplit(|&b| b == b'/')
            .find(|c| !c.is_empty())
            .unwrap_or(b"root");
        let xname = [&b"PaxHeaders/"[..], &base[..base.len().min(80)]].concat();
        header::put_text(&mut h, at::NAME, &xname);
        header::put_number(&mut h, at::MODE, 0o644);
        header::put_number(&mut h, at::UID, 0);
        header::put_number(&mut h, at::GID, 0);
        header::put_number(&mut h, at::MTIME, 0);
        header::put_number(&mut h, at::SIZE, records.len() as u64);
        h[at::TYPE] = b'x';
        h[at::MAGIC.0..at::MAGIC.0 + 8].copy_from_slice(b"ustar\x0000");
        header::seal(&mut h);
        self.w.write_all(&h)?;
        self.w.write_all(records)?;
        let pad = padded(records.len() as u64) - records.len() as u64;
        self.w.write_all(&vec![0u8; pad as usize])
    }

    /// Write stored data of the current member.
    pub fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.w.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    /// The output, for writing data directly (`io::copy` from a file takes
    /// the kernel's copy path); say how much with [`TarWriter::wrote`].
    pub fn inner(&mut self) -> &mut W {
        &mut self.w
    }

    /// `n` bytes of data went through [`TarWriter::inner`].
    pub fn wrote(&mut self, n: u64) {
        self.written += n;
    }

    /// Close the current member: check its length, write its padding.
    pub fn end_member(&mut self) -> io::Result<()> {
        if self.written != self.expect {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "member data: {} bytes written, {} expected (the source changed?)",
                    self.written, self.expect
                ),
            ));
        }
        self.w.write_all(&vec![0u8; self.pad as usize])?;
        self.expect = 0;
        self.written = 0;
        self.pad = 0;
        Ok(())
    }

    fn check_done(&self) -> io::Result<()> {
        if self.written != self.expect {
            return Err(io::Error::other("a member's data is incomplete"));
        }
        Ok(())
    }

    /// Write the two end-of-archive blocks and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.check_done()?;
        self.w.write_all(&[0u8; 2 * BLOCK as usize])?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// GNU tar's header name for a sparse 1.0 member: `DIR/GNUSparseFile.0/BASE`.
fn sparse_name(name: &[u8]) -> Vec<u8> {
    let (dir, base) = match name.iter().rposition(|&b| b == b'/') {
        Some(i) => (&name[..=i], &name[i + 1..]),
        None => (&b""[..], name),
    };
    [dir, b"GNUSparseFile.0/", base].concat()
}

/// A pax time: seconds and nanoseconds as a decimal (`-1.5` is (-2, 5e8)).
fn format_time(sec: i64, nsec: u32) -> String {
    if nsec == 0 {
        return sec.to_string();
    }
    if sec >= 0 {
        return format!("{sec}.{nsec:09}");
    }
    let (s, ns) = (sec + 1, 1_000_000_000 - nsec);
    if s == 0 {
        format!("-0.{ns:09}")
    } else {
        format!("{s}.{ns:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::TarReader;
    use super::*;

    fn member(name: &str, kind: MemberKind) -> Member {
        Member {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o4755,
            uid: 3_000_000,
            gid: 7,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 123,
            size: 0,
            link: Vec::new(),
            dev_major: 0,
            dev_minor: 0,
            xattrs: vec![(b"user.k".to_vec(), b"v\n=".to_vec())],
            sparse: None,
            offset: 0,
        }
    }

    #[test]
    fn writes_what_the_reader_reads() {
        let long = "d/".repeat(80) + "file";
        let mut f = member(&long, MemberKind::File);
        f.size = 5;
        let mut s = member("sparse", MemberKind::File);
        s.size = 1 << 20;
        s.sparse = Some(vec![(0, 3), (1 << 19, 2), (1 << 20, 0)]);
        let mut d = member("dev", MemberKind::CharDev);
        (d.dev_major, d.dev_minor) = (4000, 5);
        d.mtime_sec = -3;
        let mut l = member("h", MemberKind::Hardlink);
        l.link = long.clone().into_bytes();
        let mut w = TarWriter::new(Vec::new());
        w.begin(&member("d", MemberKind::Dir)).unwrap();
        w.end_member().unwrap();
        w.begin(&f).unwrap();
        w.data(b"hello").unwrap();
        w.end_member().unwrap();
        assert_eq!(w.begin(&s).unwrap(), 5);
        w.data(b"abcde").unwrap();
        w.end_member().unwrap();
        for m in [&d, &l] {
            w.begin(m).unwrap();
            w.end_member().unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut r = TarReader::new(&bytes[..]);
        let mut got = Vec::new();
        while let Some(mut m) = r.next_member().unwrap() {
            let mut data = vec![0u8; 16];
            let n = r.read_data(&mut data).unwrap();
            data.truncate(n);
            m.offset = 0;
            got.push((m, data));
        }
        let mut dir = member("d/", MemberKind::Dir);
        dir.name = b"d/".to_vec();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].0, dir);
        assert_eq!(got[1], (f, b"hello".to_vec()));
        assert_eq!(got[2], (s, b"abcde".to_vec()));
        assert_eq!(got[3].0, d);
        assert_eq!(got[4].0, l);
    }

    #[test]
    fn negative_times() {
        assert_eq!(format_time(-2, 500_000_000), "-1.500000000");
        assert_eq!(format_time(-1, 500_000_000), "-0.500000000");
        assert_eq!(format_time(5, 1), "5.000000001");
    }
}
