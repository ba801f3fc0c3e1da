//! Sparse members: GNU's old header map, the pax maps (0.0, 0.1, 1.0), their
//! validation, and the 1.0 map the writer emits. A sparse member's stored
//! data is its data segments back to back; the map says where each belongs.

/// The largest logical size accepted for a sparse member. A map is cheap to
/// write and expensive to honour (the holes are hashed as zeros), so a size
/// beyond any real template file is refused rather than believed.
pub const MAX_SPARSE_SIZE: u64 = 64 << 30;

/// A sparse map: (offset, length) of each data segment.
pub(super) type Map = Vec<(u64, u64)>;

/// Most segments one map may list.
const MAX_SEGMENTS: usize = 1 << 20;

/// Check a map against the member's real size and the bytes stored for it:
/// segments in order, not overlapping, inside the file, adding up to the data.
pub(super) fn validate(map: &[(u64, u64)], realsize: u64, data: u64) -> Result<(), String> {
    if realsize > MAX_SPARSE_SIZE {
        return Err(format!(
            "sparse map claims a {realsize}-byte file, more than the {} GiB limit for sparse members",
            MAX_SPARSE_SIZE >> 30
        ));
    }
    let mut end = 0u64;
    let mut total = 0u64;
    for &(off, len) in map {
        if off < end {
            return Err(format!(
                "sparse map: segment at {off} overlaps or is out of order"
            ));
        }
        end = off
            .checked_add(len)
            .filter(|&e| e <= realsize)
            .ok_or_else(|| {
                format!("sparse map: segment {off}+{len} runs past the file's size {realsize}")
            })?;
        total += len;
    }
    if total != data {
        return Err(format!(
            "sparse map lists {total} bytes of data but the member stores {data}"
        ));
    }
    Ok(())
}

/// Numbers taken two by two as (offset, length).
pub(super) fn pairs(v: &[u64]) -> Result<Vec<(u64, u64)>, String> {
    if !v.len().is_multiple_of(2) {
        return Err("sparse map with an odd count of numbers".into());
    }
    if v.len() / 2 > MAX_SEGMENTS {
        return Err("sparse map with too many segments".into());
    }
    Ok(v.chunks(2).map(|c| (c[0], c[1])).collect())
}

/// Parse a 1.0 map (decimal lines: count, then offset and length per
/// segment) from the start of `buf`. `Ok(None)`: more bytes are needed.
/// Returns the map and the bytes it takes, rounded up to whole blocks.
pub(super) fn parse_v1(buf: &[u8]) -> Result<Option<(Map, usize)>, String> {
    let mut nums = Vec::new();
    let mut pos: usize = 0;
    let mut want: Option<usize> = None;
    loop {
        if let Some(w) = want
            && nums.len() == 2 * w
        {
            let map = pairs(&nums)?;
            return Ok(Some((map, pos.div_ceil(512) * 512)));
        }
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() - pos > 24 {
                return Err("sparse map: a number longer than 20 digits".into());
            }
            return Ok(None);
        };
        let n: u64 = std::str::from_utf8(&buf[pos..pos + nl])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("sparse map: a line that is not a number")?;
        pos += nl + 1;
        match want {
            None => {
                let n = usize::try_from(n).ok().filter(|&n| n <= MAX_SEGMENTS);
                want = Some(n.ok_or("sparse map with too many segments")?);
            }
            Some(_) => nums.push(n),
        }
    }
}

/// The 1.0 map for `map`, padded to whole blocks.
pub(super) fn encode_v1(map: &[(u64, u64)]) -> Vec<u8> {
    let mut s = format!("{}\n", map.len());
    for (o, l) in map {
        s.push_str(&format!("{o}\n{l}\n"));
    }
    let mut v = s.into_bytes();
    v.resize(v.len().div_ceil(512) * 512, 0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_validate() {
        assert!(validate(&[(0, 10), (100, 5), (200, 0)], 200, 15).is_ok());
        assert!(validate(&[(0, 10), (5, 5)], 200, 15).is_err());
        assert!(validate(&[(0, 10), (195, 10)], 200, 20).is_err());
        assert!(validate(&[(0, 10)], 200, 11).is_err());
        assert!(validate(&[(0, 10)], 10 << 40, 10).is_err());
        assert!(validate(&[(u64::MAX, 10)], 200, 10).is_err());
    }

    #[test]
    fn v1_round_trip() {
        let map = vec![(0, 4096), (1 << 20, 10)];
        let enc = encode_v1(&map);
        assert_eq!(enc.len(), 512);
        assert_eq!(parse_v1(&enc).unwrap(), Some((map, 512)));
        assert_eq!(parse_v1(b"2\n0\n").unwrap(), None);
        assert!(parse_v1(b"x\n").is_err());
    }
}
