//! One 512-byte tar header: field access, numbers (octal or GNU base-256),
//! the checksum, and building a header for the writer.

use super::BLOCK;

pub(super) type Block = [u8; BLOCK as usize];

/// Field offsets and lengths of the ustar header.
pub(super) mod at {
    pub const NAME: (usize, usize) = (0, 100);
    pub const MODE: (usize, usize) = (100, 8);
    pub const UID: (usize, usize) = (108, 8);
    pub const GID: (usize, usize) = (116, 8);
    pub const SIZE: (usize, usize) = (124, 12);
    pub const MTIME: (usize, usize) = (136, 12);
    pub const CHKSUM: (usize, usize) = (148, 8);
    pub const TYPE: usize = 156;
    pub const LINK: (usize, usize) = (157, 100);
    pub const MAGIC: (usize, usize) = (257, 8);
    pub const DEVMAJOR: (usize, usize) = (329, 8);
    pub const DEVMINOR: (usize, usize) = (337, 8);
    pub const PREFIX: (usize, usize) = (345, 155);
    /// Old GNU sparse header: 4 (offset, numbytes) pairs, the extended flag,
    /// the real size.
    pub const GNU_SPARSE: usize = 386;
    pub const GNU_ISEXTENDED: usize = 482;
    pub const GNU_REALSIZE: (usize, usize) = (483, 12);
}

/// The bytes of a field up to its first NUL.
pub(super) fn text(h: &Block, (off, len): (usize, usize)) -> &[u8] {
    let f = &h[off..off + len];
    match f.iter().position(|&b| b == 0) {
        Some(n) => &f[..n],
        None => f,
    }
}

/// A numeric field: octal digits (with spaces or NULs around them), or GNU's
/// base-256 (first byte's high bit set; 0xff starts a negative number).
pub(super) fn number(h: &Block, (off, len): (usize, usize)) -> Result<i64, String> {
    number_bytes(&h[off..off + len])
}

pub(super) fn number_bytes(f: &[u8]) -> Result<i64, String> {
    if f.first().is_some_and(|&b| b & 0x80 != 0) {
        let negative = f[0] == 0xff;
        let mut v: i128 = if negative {
            -1
        } else {
            i128::from(f[0] & 0x7f)
        };
        for &b in &f[1..] {
            v = (v << 8) | i128::from(b);
            if v > i128::from(i64::MAX) || v < i128::from(i64::MIN) {
                return Err("a base-256 number out of range".into());
            }
        }
        return Ok(v as i64);
    }
    let digits: &[u8] = {
        let start = f
            .iter()
            .position(|&b| b != b' ' && b != 0)
            .unwrap_or(f.len());
        let rest = &f[start..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == 0)
            .unwrap_or(rest.len());
        &rest[..end]
    };
    let mut v: i64 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return Err(format!(
                "{:?} is not an octal number",
                String::from_utf8_lossy(f)
            ));
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .ok_or("an octal number out of range")?;
    }
    Ok(v)
}

/// True when the block is all zeros (an end-of-archive block).
pub(super) fn is_zero(h: &Block) -> bool {
    h.iter().all(|&b| b == 0)
}

/// Check the header checksum: the sum of all bytes with the checksum field
/// read as spaces, unsigned (POSIX) or signed (some old writers).
pub(super) fn checksum_ok(h: &Block) -> bool {
    let Ok(stored) = number(h, at::CHKSUM) else {
        return false;
    };
    let (off, len) = at::CHKSUM;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &b) in h.iter().enumerate() {
        let b = if (off..off + len).contains(&i) {
            b' '
        } else {
            b
        };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// Write `v` as zero-padded octal filling the field, or as base-256 when it
/// does not fit (GNU tar and bsdtar read both).
pub(super) fn put_number(h: &mut Block, (off, len): (usize, usize), v: u64) {
    let digits = len - 1;
    if digits >= 22 || v < (1u64 << (3 * digits)) {
        let s = format!("{v:0digits$o}");
        h[off..off + digits].copy_from_slice(s.as_bytes());
        h[off + digits] = 0;
    } else {
        let f = &mut h[off..off + len];
        f.fill(0);
        let bytes = v.to_be_bytes();
        f[len - 8..].copy_from_slice(&bytes);
        f[0] |= 0x80;
    }
}

/// Copy `value` into a text field (truncated by the caller's choice of pax
/// records: callers only pass values that fit).
pub(super) fn put_text(h: &mut Block, (off, len): (usize, usize), value: &[u8]) {
    let n = value.len().min(len);
    h[off..off + n].copy_from_slice(&value[..n]);
}

/// Fill in the checksum field of a finished header.
pub(super) fn seal(h: &mut Block) {
    let (off, len) = at::CHKSUM;
    h[off..off + len].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[off..off + len].copy_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_octal_and_base256() {
        let mut h = [0u8; 512];
        put_number(&mut h, at::SIZE, 0o1234);
        assert_eq!(number(&h, at::SIZE), Ok(0o1234));
        put_number(&mut h, at::SIZE, 10 << 40);
        assert_eq!(h[at::SIZE.0] & 0x80, 0x80);
        assert_eq!(number(&h, at::SIZE), Ok(10 << 40));
        put_number(&mut h, at::UID, 1 << 30);
        assert_eq!(number(&h, at::UID), Ok(1 << 30));
        assert!(number_bytes(b"12 9").is_ok());
        assert!(number_bytes(b"19").is_err());
        assert_eq!(number_bytes(&[0xff; 8]), Ok(-1));
    }

    #[test]
    fn checksum_round_trip() {
        let mut h = [0u8; 512];
        put_text(&mut h, at::NAME, b"a");
        seal(&mut h);
        assert!(checksum_ok(&h));
        h[0] = b'b';
        assert!(!checksum_ok(&h));
    }
}
