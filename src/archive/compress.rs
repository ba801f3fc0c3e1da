//! Compression of archive streams: recognised from the first bytes (gzip,
//! zstd, xz, bzip2, else none), decoded as a stream, and watched for bombs:
//! once the output passes [`BOMB_FLOOR`] bytes and is more than
//! [`BOMB_RATIO`] times the input read, decoding stops with an error. Real
//! templates compress a few times over; only made-up data reaches 200x.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Output below this is never called a bomb.
pub const BOMB_FLOOR: u64 = 1 << 30;
/// Largest expansion accepted beyond the floor.
pub const BOMB_RATIO: u64 = 200;

/// A compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    /// The format whose magic number starts `head`.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// The error a bomb guard returns (inside an `io::Error`).
#[derive(Debug, thiserror::Error)]
#[error(
    "decompression bomb: {out} bytes came out of {input} compressed bytes (more than {BOMB_RATIO}x); refused"
)]
pub struct BombError {
    out: u64,
    input: u64,
}

/// Counts the compressed bytes read.
struct Counting<R> {
    r: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.r.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.r.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.n.fetch_add(amt as u64, Ordering::Relaxed);
        self.r.consume(amt);
    }
}

/// Stops decoding once the output is implausibly larger than the input.
struct Guard<R> {
    r: R,
    input: Arc<AtomicU64>,
    out: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.r.read(buf)?;
        self.out += k as u64;
        let input = self.input.load(Ordering::Relaxed).max(1);
        if self.out > BOMB_FLOOR && self.out / input > BOMB_RATIO {
            return Err(io::Error::other(BombError {
                out: self.out,
                input,
            }));
        }
        Ok(k)
    }
}

/// A decoded stream of `r`, with the compression found.
pub fn decoder<'a, R: Read + Send + 'a>(
    r: R,
) -> io::Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let mut buffered = BufReader::with_capacity(1 << 20, r);
    let c = Compression::detect(buffered.fill_buf()?);
    if c == Compression::None {
        return Ok((c, Box::new(buffered)));
    }
    let n = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        r: buffered,
        n: n.clone(),
    };
    let inner: Box<dyn Read + Send + 'a> = match c {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(counted)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(counted)?;
            // Archives made with `zstd --long` need windows past the default.
            d.window_log_max(31)?;
            Box::new(d)
        }
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(counted)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(counted)),
        Compression::None => unreachable!("handled above"),
    };
    Ok((
        c,
        Box::new(Guard {
            r: inner,
            input: n,
            out: 0,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decodes() {
        let data = b"hello tar".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        for (bytes, want) in [
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
            (data.clone(), Compression::None),
        ] {
            let (c, mut r) = decoder(std::io::Cursor::new(bytes)).unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }
}
