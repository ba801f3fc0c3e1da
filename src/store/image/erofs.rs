//! An EROFS image writer for the uncompressed subset the kernel backend needs:
//! the superblock, extended (64-byte) inodes, inline xattrs, directories, data
//! stored in the image (inline tails or whole blocks), device numbers, and
//! chunk-based files whose single chunk map entry is a hole (the bytes live
//! elsewhere; overlayfs finds them through a redirect).
//!
//! The layout follows `fs/erofs/erofs_fs.h` of Linux: 4 KiB blocks, the
//! superblock at byte 1024 of block 0, the metadata area starting at block 0
//! (a node id is a byte offset / 32), every inode 32-byte aligned, a tail that is
//! stored inline never crosses a block boundary, directory blocks hold sorted
//! `erofs_dirent`s followed by their names. Nothing here knows about manifests
//! or the store: [`build`](super::build) turns a manifest into [`Inode`]s.
//!
//! The output is a pure function of the input (no clock, no randomness), so an
//! image can be checked by writing it again and comparing.

use std::collections::HashMap;

/// Block size (bits and bytes). Overlayfs and the page cache want 4 KiB.
pub(crate) const BLOCK_BITS: u8 = 12;
pub(crate) const BLOCK: usize = 1 << BLOCK_BITS;

const MAGIC: u32 = 0xE0F5_E1E2;
const SUPER_OFFSET: usize = 1024;
const SUPER_SIZE: usize = 128;
const INODE_SIZE: usize = 64;
const XATTR_HEADER: usize = 12;
const DIRENT_SIZE: usize = 12;
const NULL_ADDR: u32 = u32::MAX;
/// Largest chunk: `blocksize << 31` (the chunk format keeps 5 bits).
const MAX_CHUNK_BITS: u32 = BLOCK_BITS as u32 + 31;

const FEATURE_INCOMPAT_CHUNKED_FILE: u32 = 0x4;

const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;
const LAYOUT_CHUNK_BASED: u16 = 4;

/// xattr name indexes (`EROFS_XATTR_INDEX_*`).
pub(crate) const XATTR_USER: u8 = 1;
pub(crate) const XATTR_POSIX_ACL_ACCESS: u8 = 2;
pub(crate) const XATTR_POSIX_ACL_DEFAULT: u8 = 3;
pub(crate) const XATTR_TRUSTED: u8 = 4;
pub(crate) const XATTR_SECURITY: u8 = 6;

/// One extended attribute, its name split into a prefix index and the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Xattr {
    pub index: u8,
    pub suffix: Vec<u8>,
    pub value: Vec<u8>,
}

/// What an inode holds besides its attributes.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    /// Bytes kept in the image: a small file's content or a symlink's target.
    Data(Vec<u8>),
    /// A directory's entries other than `.` and `..`: (name, index of the inode).
    Dir {
        parent: usize,
        entries: Vec<(Vec<u8>, usize)>,
    },
    /// A regular file whose bytes are not in the image: the size is kept, the
    /// data is one hole.
    Hole,
    /// A character or block device; the number in the kernel's `new_encode_dev`
    /// form.
    Device(u32),
    /// Nothing (a fifo or a socket).
    Empty,
}

/// One inode to write. The file type is in `mode`.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub nlink: u32,
    /// The size `stat` shows (set by the writer for `Data` and `Dir`).
    pub size: u64,
    pub xattrs: Vec<Xattr>,
    pub body: Body,
}

/// Why an image cannot be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayoutError {
    #[error("the extended attributes of one inode take more than 256 KiB")]
    InodeXattrs,
    #[error("an extended attribute name is longer than 255 bytes or its value longer than 65535")]
    OneXattr,
    #[error("the image would exceed 16 TiB")]
    ImageSize,
}

/// A directory's entries split into blocks: (name, inode index) per entry.
type DirBlocks = Vec<Vec<(Vec<u8>, usize)>>;

/// Where one inode goes and how it is stored.
struct Placed {
    pos: usize,
    layout: u16,
    xattrs: Vec<u8>,
    /// Bytes of data (file content, symlink target, directory blocks).
    data: Vec<u8>,
    /// Bytes of `data` stored inline after the xattrs.
    inline: usize,
    /// First block of the data kept in whole blocks.
    blkaddr: u32,
    chunk_bits: u32,
    chunks: usize,
}

impl Placed {
    fn meta_len(&self) -> usize {
        INODE_SIZE + self.xattrs.len() + self.inline + self.chunks * 4
    }
    fn block_bytes(&self) -> usize {
        (self.data.len() - self.inline).div_ceil(BLOCK) * BLOCK
    }
}

/// Write an image of `inodes`; `inodes[0]` is the root directory. `uuid` names
/// the file system (overlayfs uses it to tell layers apart).
pub(crate) fn write(inodes: &mut [Inode], uuid: [u8; 16]) -> Result<Vec<u8>, LayoutError> {
    // Directory blocks depend on names only, so sizes are known before any
    // node id is; the node ids are filled in once everything is placed.
    let mut dir_groups: HashMap<usize, DirBlocks> = HashMap::new();
    let mut placed = Vec::with_capacity(inodes.len());
    for (i, ino) in inodes.iter_mut().enumerate() {
        let xattrs = encode_xattrs(&ino.xattrs)?;
        let (data, chunks, chunk_bits) = match &ino.body {
            Body::Data(d) => (d.clone(), 0, 0),
            Body::Dir { parent, entries } => {
                let mut all: Vec<(Vec<u8>, usize)> = Vec::with_capacity(entries.len() + 2);
                all.push((b".".to_vec(), i));
                all.push((b"..".to_vec(), *parent));
                all.extend(entries.iter().cloned());
                all.sort_by(|a, b| a.0.cmp(&b.0));
                let groups = group_dirents(all);
                let len = dir_len(&groups);
                dir_groups.insert(i, groups);
                // Filled with the encoded blocks once node ids are known.
                (vec![0; len], 0, 0)
            }
            Body::Hole => {
                let bits = chunk_bits_for(ino.size);
                let n = ino.size.div_ceil(1u64 << bits).max(1);
                (
                    Vec::new(),
                    usize::try_from(n).map_err(|_| LayoutError::ImageSize)?,
                    bits,
                )
            }
            Body::Device(_) | Body::Empty => (Vec::new(), 0, 0),
        };
        if !matches!(ino.body, Body::Hole) {
            ino.size = data.len() as u64;
        }
        let tail = data.len() % BLOCK;
        let (layout, inline) = if chunks > 0 {
            (LAYOUT_CHUNK_BASED, 0)
        } else if tail > 0 && INODE_SIZE + xattrs.len() + tail <= BLOCK {
            (LAYOUT_FLAT_INLINE, tail)
        } else {
            (LAYOUT_FLAT_PLAIN, 0)
        };
        placed.push(Placed {
            pos: 0,
            layout,
            xattrs,
            data,
            inline,
            blkaddr: 0,
            chunk_bits,
            chunks,
        });
    }

    // Metadata area: inodes in order from just after the superblock.
    let mut cur = SUPER_OFFSET + SUPER_SIZE;
    for p in &mut placed {
        let mut pos = cur.next_multiple_of(32);
        let in_block = pos % BLOCK;
        let header_crosses = in_block + INODE_SIZE > BLOCK;
        let tail_crosses =
            p.inline > 0 && (pos + INODE_SIZE + p.xattrs.len()) % BLOCK + p.inline > BLOCK;
        if header_crosses || tail_crosses {
            pos = pos.next_multiple_of(BLOCK);
        }
        p.pos = pos;
        cur = pos + p.meta_len();
    }
    // Data area: whole blocks after the metadata.
    let mut blk = cur.div_ceil(BLOCK);
    for p in &mut placed {
        let n = p.block_bytes() / BLOCK;
        if n > 0 {
            p.blkaddr = u32::try_from(blk).map_err(|_| LayoutError::ImageSize)?;
            blk += n;
        }
    }
    let total_blocks = u32::try_from(blk).map_err(|_| LayoutError::ImageSize)?;
    let nids: Vec<u64> = placed.iter().map(|p| (p.pos / 32) as u64).collect();
    let root_nid = u16::try_from(nids[0]).map_err(|_| LayoutError::ImageSize)?;

    for (i, groups) in dir_groups {
        placed[i].data = encode_dir(&groups, &nids, inodes);
    }

    let mut out = vec![0u8; blk * BLOCK];
    let chunked = placed.iter().any(|p| p.chunks > 0);
    write_super(
        &mut out,
        root_nid,
        inodes.len() as u64,
        total_blocks,
        uuid,
        chunked,
    );
    for (i, (ino, p)) in inodes.iter().zip(&placed).enumerate() {
        write_inode(&mut out, ino, p, i as u32 + 1);
    }
    Ok(out)
}

/// The smallest chunk (at least one block) that holds the whole file, so one
/// map entry describes it; a larger file gets several largest chunks.
fn chunk_bits_for(size: u64) -> u32 {
    let need = 64 - size.saturating_sub(1).leading_zeros();
    need.clamp(BLOCK_BITS as u32, MAX_CHUNK_BITS)
}

fn encode_xattrs(xattrs: &[Xattr]) -> Result<Vec<u8>, LayoutError> {
    if xattrs.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![0u8; XATTR_HEADER];
    for x in xattrs {
        let name_len = u8::try_from(x.suffix.len()).map_err(|_| LayoutError::OneXattr)?;
        let value_len = u16::try_from(x.value.len()).map_err(|_| LayoutError::OneXattr)?;
        out.push(name_len);
        out.push(x.index);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(&x.suffix);
        out.extend_from_slice(&x.value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    // i_xattr_icount = 1 + (len - 12) / 4 must fit 16 bits.
    if (out.len() - XATTR_HEADER) / 4 + 1 > u16::MAX as usize {
        return Err(LayoutError::InodeXattrs);
    }
    Ok(out)
}

/// Split sorted entries into directory blocks: each block holds its dirents,
/// then their names, within [`BLOCK`] bytes.
fn group_dirents(all: Vec<(Vec<u8>, usize)>) -> DirBlocks {
    let mut groups = vec![];
    let mut cur = vec![];
    let mut used = 0;
    for e in all {
        let need = DIRENT_SIZE + e.0.len();
        if used + need > BLOCK {
            groups.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += need;
        cur.push(e);
    }
    groups.push(cur);
    groups
}

/// A directory's size: whole blocks, then what the last block uses.
fn dir_len(groups: &[Vec<(Vec<u8>, usize)>]) -> usize {
    let last: usize = groups
        .last()
        .map_or(0, |g| g.iter().map(|e| DIRENT_SIZE + e.0.len()).sum());
    (groups.len() - 1) * BLOCK + last
}

fn encode_dir(groups: &[Vec<(Vec<u8>, usize)>], nids: &[u64], inodes: &[Inode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(groups.len() * BLOCK);
    for (gi, g) in groups.iter().enumerate() {
        let start = out.len();
        let mut nameoff = g.len() * DIRENT_SIZE;
        for (name, target) in g {
            out.extend_from_slice(&nids[*target].to_le_bytes());
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(file_type(inodes[*target].mode));
            out.push(0);
            nameoff += name.len();
        }
        for (name, _) in g {
            out.extend_from_slice(name);
        }
        if gi + 1 < groups.len() {
            out.resize(start + BLOCK, 0);
        }
    }
    out
}

/// The dirent file type (`FT_*`) of a mode.
fn file_type(mode: u16) -> u8 {
    match u32::from(mode) & libc::S_IFMT {
        libc::S_IFREG => 1,
        libc::S_IFDIR => 2,
        libc::S_IFCHR => 3,
        libc::S_IFBLK => 4,
        libc::S_IFIFO => 5,
        libc::S_IFSOCK => 6,
        libc::S_IFLNK => 7,
        _ => 0,
    }
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

fn write_super(
    out: &mut [u8],
    root_nid: u16,
    inos: u64,
    blocks: u32,
    uuid: [u8; 16],
    chunked: bool,
) {
    let s = SUPER_OFFSET;
    put(out, s, &MAGIC.to_le_bytes());
    // checksum (4) and feature_compat (4) stay 0: no checksum feature.
    out[s + 12] = BLOCK_BITS;
    put(out, s + 14, &root_nid.to_le_bytes());
    put(out, s + 16, &inos.to_le_bytes());
    // build_time (8) and build_time_nsec (4): 0; extended inodes carry their own.
    put(out, s + 36, &blocks.to_le_bytes());
    // meta_blkaddr (4) and xattr_blkaddr (4): 0.
    put(out, s + 48, &uuid);
    put(out, s + 64, b"vzstore");
    let incompat = if chunked {
        FEATURE_INCOMPAT_CHUNKED_FILE
    } else {
        0
    };
    put(out, s + 80, &incompat.to_le_bytes());
}

fn write_inode(out: &mut [u8], ino: &Inode, p: &Placed, number: u32) {
    let at = p.pos;
    let icount = if p.xattrs.is_empty() {
        0u16
    } else {
        ((p.xattrs.len() - XATTR_HEADER) / 4 + 1) as u16
    };
    let i_u = match (&ino.body, p.layout) {
        (Body::Device(rdev), _) => *rdev,
        (_, LAYOUT_CHUNK_BASED) => p.chunk_bits - u32::from(BLOCK_BITS),
        _ => p.blkaddr,
    };
    put(out, at, &(1 | (p.layout << 1)).to_le_bytes());
    put(out, at + 2, &icount.to_le_bytes());
    put(out, at + 4, &ino.mode.to_le_bytes());
    put(out, at + 8, &ino.size.to_le_bytes());
    put(out, at + 16, &i_u.to_le_bytes());
    put(out, at + 20, &number.to_le_bytes());
    put(out, at + 24, &ino.uid.to_le_bytes());
    put(out, at + 28, &ino.gid.to_le_bytes());
    put(out, at + 32, &ino.mtime.to_le_bytes());
    put(out, at + 40, &ino.mtime_nsec.to_le_bytes());
    put(out, at + 44, &ino.nlink.to_le_bytes());
    let mut off = at + INODE_SIZE;
    put(out, off, &p.xattrs);
    off += p.xattrs.len();
    if p.chunks > 0 {
        for _ in 0..p.chunks {
            put(out, off, &NULL_ADDR.to_le_bytes());
            off += 4;
        }
    }
    let whole = p.data.len() - p.inline;
    if p.inline > 0 {
        put(out, off, &p.data[whole..]);
    }
    if whole > 0 {
        put(out, p.blkaddr as usize * BLOCK, &p.data[..whole]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_bits_cover_the_file_in_one_chunk() {
        assert_eq!(chunk_bits_for(1), 12);
        assert_eq!(chunk_bits_for(4096), 12);
        assert_eq!(chunk_bits_for(4097), 13);
        assert_eq!(chunk_bits_for(1 << 30), 30);
        assert_eq!(chunk_bits_for((1 << 30) + 1), 31);
        assert_eq!(chunk_bits_for(u64::MAX), MAX_CHUNK_BITS);
    }

    #[test]
    fn directory_blocks_never_overflow_and_sizes_add_up() {
        let names: Vec<(Vec<u8>, usize)> = (0..1000)
            .map(|i| {
                (
                    format!("name-{i:05}-{}", "x".repeat(i % 200)).into_bytes(),
                    0,
                )
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        let groups = group_dirents(sorted);
        for g in &groups {
            let used: usize = g.iter().map(|e| DIRENT_SIZE + e.0.len()).sum();
            assert!(used <= BLOCK);
            assert!(!g.is_empty());
        }
        assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), 1000);
        let len = dir_len(&groups);
        assert!(len > (groups.len() - 1) * BLOCK && len <= groups.len() * BLOCK);
    }
}
