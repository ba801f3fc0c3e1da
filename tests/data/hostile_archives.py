#!/usr/bin/env python3
"""Hostile inputs for `vzstore ingest` (tar archives and OCI image sources).

Usage: python3 tests/data/hostile_archives.py OUTDIR [--skip-bombs]

Writes every case below into OUTDIR (created if missing; existing files of the
same names are replaced) and prints nothing on success. Everything is built
deterministically: fixed mtimes (MTIME below), uid/gid 0, owner names "root",
gzip headers with mtime 0 and no file name, sorted JSON keys. Each file is
under 2 MiB except bomb.tar.gz (about 8 MiB). The two 8 GiB bombs are made by
streaming (about a minute each on one core); --skip-bombs leaves out
bomb.tar.gz and bomb.tar.zst (only those two).

Files and the ingest's expected behaviour (in brackets):

 1. dotdot.tar: members `../evil` then `a/../../evil2` (regular files)
    [error naming the member: escapes the tree]
 2. absolute.tar: `/etc/abs-file` (regular, "abs\\n") and `/abs-dir/`
    [leading `/` stripped with a warning, like GNU tar: the template has
    etc/abs-file]
 3. symlink-through.tar: `dir/`, symlink `dir/link -> /etc`, regular
    `dir/link/passwd` [error: a parent is a symlink]
    symlink-through-rel.tar: symlink `link -> ../..`, regular `link/x`
    [error: a parent is a symlink]
 4. hardlink-outside.tar: hardlink `h` -> `../../etc/passwd` [error]
    hardlink-absent.tar: hardlink `h` -> `not/there`, never in the archive
    [error]
    hardlink-forward.tar: hardlink `h` -> `f`, `f` appears only after `h`
    [error: names a member not yet read]
 5. replace-dir.tar: `d/`, `d/x` (file), then a regular file `d`
    [error: replaces a directory holding entries]
    replace-empty-dir.tar: `e/` then a regular file `e`
    [last wins: e is a file]
 6. duplicate.tar: regular `f` = "one\\n" then `f` = "two\\n"
    [last wins, with a warning; template has f = "two\\n"]
 7. sparse-10tb.tar: GNU old-format sparse member `big` (typeflag 'S',
    realsize 10 TiB = 10*2**40 in base-256, one data segment of 4096 bytes
    at offset 0) [error: sparse member larger than the limit]
    sparse-10tb-pax.tar: pax GNU sparse 1.0 (GNU.sparse.major=1, minor=0,
    realsize=10995116277760, name=big; header name GNUSparseFile.0/big), map
    "1\\n0\\n4096\\n" padded to 512, then 4096 data bytes
    [error: sparse member larger than the limit]
    sparse-bad-map.tar: two pax 1.0 sparse members, realsize 8192 each:
    `past` whose one segment (4096, 8192) runs past realsize, then `overlap`
    with segments (0, 4096) and (2048, 4096) [error: bad sparse map]
 8. truncated.tar: `a` (small), then `big` (100 KiB), cut in the middle of
    big's data [error naming the member/offset: truncated]
    truncated-header.tar: `a` (small), then `b`'s header cut after 256 of
    its 512 bytes [error naming the member/offset: truncated]
 9. bad-checksum.tar: members a, b, c; the second header's name changed from
    `b` to `B` after its checksum was computed [error: bad header checksum]
10. bomb.tar.gz, bomb.tar.zst: a tar holding one regular file `zeros` of
    8 GiB (size in base-256, as GNU tar writes it) of zeros, gzip level 9 /
    `zstd -19 --long` [error: expands more than the ratio limit]
    bomb-nested.tar.gz: a tar.gz whose single member `inner.gz` is a gzip
    of 1 GiB of zeros (about 1 MiB). The outer gzip uses stored blocks
    (level 0) so the outer stream expands about 1:1 whatever the limit is
    [NOT an error: inner.gz is a small regular file stored as is]
11. oci-bad-digest/: OCI layout, one manifest (ref.name latest), one gzip
    layer (layer 1 of oci-good) whose blob, stored under the digest the
    manifest names, had one byte of its gzip header (mtime) changed after:
    it still decompresses to the right diff_id, only the digest is wrong
    [error naming the layer digest]
    oci-good/: the same image done correctly with two gzip layers.
    Layer 1: etc/, etc/hostname, bin/, bin/busybox, symlink bin/sh ->
    busybox, hardlink bin/ash -> bin/busybox, opt/, opt/old.
    Layer 2: etc/, etc/.wh.hostname, opt/, opt/.wh..wh..opq, opt/new.
    [result: etc/ without hostname; bin/busybox, bin/sh, bin/ash (same inode
    as busybox); opt/ holds only new; Env PATH=/usr/bin, Cmd /bin/sh]
12. whiteout-dotdot/: like oci-good, but layer 2 holds `.wh...` (whiteout of
    `..`), `a/`, `a/.wh..` (whiteout of `.`) [error]
    whiteout-escape/: like oci-good, but layer 2 holds `../.wh.x` [error]
13. oci-archive-good.tar: oci-good/ as a tar, the layout at the tar root
    [ingests like oci-good]
    docker-archive-good.tar: the same image as a docker archive:
    manifest.json = [{"Config": "<hex>.json", "RepoTags":
    ["localhost/good:latest"], "Layers": ["<hex1>/layer.tar",
    "<hex2>/layer.tar"]}], layers uncompressed, <hexN> their diff_ids
    [ingests like oci-good]
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

MTIME = 1700000000  # 2023-11-14T22:13:20Z
BLOCK = 512
END = bytes(2 * BLOCK)

# ---------------------------------------------------------------- tar headers


def _octal(value, width):
    """NUL-terminated zero-padded octal; base-256 (GNU) when it does not fit."""
    digits = width - 1
    if 0 <= value < 8 ** digits:
        return b"%0*o\0" % (digits, value)
    return b"\x80" + value.to_bytes(width - 1, "big")


def _field(data, width):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) <= width, (data, width)
    return data + bytes(width - len(data))


def _checksum(block):
    block = bytearray(block)
    block[148:156] = b" " * 8
    chk = sum(block)
    block[148:156] = b"%06o\0 " % chk
    return bytes(block)


def header(name, typeflag=b"0", size=0, mode=None, linkname="", gnu=False,
           gnu_extra=b""):
    """One 512-byte header. ustar unless gnu (then GNU magic, and gnu_extra
    fills bytes 345..512: atime, ctime, offset, longnames, sparse map,
    isextended, realsize)."""
    if mode is None:
        mode = 0o755 if typeflag in (b"5", b"2") else 0o644
    h = b"".join([
        _field(name, 100),
        _octal(mode, 8),
        _octal(0, 8),          # uid
        _octal(0, 8),          # gid
        _octal(size, 12),
        _octal(MTIME, 12),
        b" " * 8,              # checksum, filled below
        typeflag,
        _field(linkname, 100),
        b"ustar  \0" if gnu else b"ustar\x0000",
        _field("root", 32),
        _field("root", 32),
        _octal(0, 8),          # devmajor
        _octal(0, 8),          # devminor
    ])
    assert len(h) == 345
    h += _field(gnu_extra, 167)
    assert len(h) == BLOCK
    return _checksum(h)


def pad(data):
    return data + bytes(-len(data) % BLOCK)


def reg(name, content, mode=0o644):
    if isinstance(content, str):
        content = content.encode()
    return header(name, b"0", len(content), mode) + pad(content)


def dir_(name):
    return header(name if name.endswith("/") else name + "/", b"5")


def sym(name, target):
    return header(name, b"2", linkname=target, mode=0o777)


def hard(name, target):
    return header(name, b"1", linkname=target)


def pax_record(key, value):
    body = " %s=%s\n" % (key, value)
    n = len(body.encode())
    length = n + len(str(n))
    if len(str(length)) != len(str(n)):
        length = n + len(str(length))
    rec = ("%d" % length + body).encode()
    assert len(rec) == length
    return rec


def pax(name, records):
    data = b"".join(pax_record(k, v) for k, v in records)
    return header(name, b"x", len(data)) + pad(data)


def tar(*members):
    return b"".join(members) + END


def pattern(n, seed=b"vzstore"):
    """n deterministic, non-zero, incompressible-looking bytes."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


def write(outdir, name, data):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- tar cases


def case_paths(out):
    write(out, "dotdot.tar", tar(reg("../evil", "evil\n"),
                                 reg("a/../../evil2", "evil2\n")))
    write(out, "absolute.tar", tar(reg("/etc/abs-file", "abs\n"),
                                   dir_("/abs-dir/")))
    write(out, "symlink-through.tar", tar(dir_("dir/"),
                                          sym("dir/link", "/etc"),
                                          reg("dir/link/passwd", "pw\n")))
    write(out, "symlink-through-rel.tar", tar(sym("link", "../.."),
                                              reg("link/x", "x\n")))


def case_links(out):
    write(out, "hardlink-outside.tar", tar(hard("h", "../../etc/passwd")))
    write(out, "hardlink-absent.tar", tar(hard("h", "not/there")))
    write(out, "hardlink-forward.tar", tar(hard("h", "f"), reg("f", "f\n")))


def case_replace(out):
    write(out, "replace-dir.tar", tar(dir_("d/"), reg("d/x", "x\n"),
                                      reg("d", "d\n")))
    write(out, "replace-empty-dir.tar", tar(dir_("e/"), reg("e", "e\n")))
    write(out, "duplicate.tar", tar(reg("f", "one\n"), reg("f", "two\n")))


def gnu_sparse_extra(segments, realsize, isextended=0):
    """Bytes 345..512 of a GNU header: atime, ctime, offset, longnames,
    unused, 4 sparse entries (offset, numbytes), isextended, realsize."""
    assert len(segments) <= 4
    sp = b"".join(_octal(o, 12) + _octal(n, 12) for o, n in segments)
    sp += bytes(96 - len(sp))
    extra = (bytes(12) + bytes(12) + bytes(12) + bytes(4) + bytes(1) + sp
             + bytes([1 if isextended else 0]) + _octal(realsize, 12))
    assert len(extra) == 495 - 345
    return extra


def pax_sparse(name, realsize, segments):
    """A GNU sparse 1.0 member: pax header, then the ustar header whose data
    is the map (padded to 512) followed by the segments' bytes."""
    smap = "%d\n" % len(segments)
    for o, n in segments:
        smap += "%d\n%d\n" % (o, n)
    data = pad(smap.encode())
    stored = sum(n for _, n in segments)
    payload = pattern(stored, name.encode())
    return (pax("PaxHeaders.0/" + name, [
                ("GNU.sparse.major", "1"),
                ("GNU.sparse.minor", "0"),
                ("GNU.sparse.name", name),
                ("GNU.sparse.realsize", str(realsize)),
            ])
            + header("GNUSparseFile.0/" + name, b"0", len(data) + stored)
            + pad(data + payload))


def case_sparse(out):
    tb10 = 10 * 2 ** 40
    assert tb10 == 10995116277760
    data = pattern(4096, b"big")
    write(out, "sparse-10tb.tar", tar(
        header("big", b"S", size=4096, gnu=True,
               gnu_extra=gnu_sparse_extra([(0, 4096)], tb10)) + data))
    write(out, "sparse-10tb-pax.tar", tar(pax_sparse("big", tb10,
                                                     [(0, 4096)])))
    write(out, "sparse-bad-map.tar", tar(
        pax_sparse("past", 8192, [(4096, 8192)]),
        pax_sparse("overlap", 8192, [(0, 4096), (2048, 4096)])))


def case_truncated(out):
    a = reg("a", "a\n")
    big = reg("big", pattern(100 * 1024, b"big"))
    whole = tar(a, big)
    # big's header is at len(a); its data starts one block later.
    write(out, "truncated.tar", whole[:len(a) + BLOCK + 50 * 1024])
    whole = tar(a, reg("b", "b\n"))
    write(out, "truncated-header.tar", whole[:len(a) + 256])


def case_checksum(out):
    a, b, c = reg("a", "a\n"), reg("b", "b\n"), reg("c", "c\n")
    b = bytearray(b)
    assert b[0:1] == b"b"
    b[0:1] = b"B"  # checksum left as computed for "b"
    write(out, "bad-checksum.tar", tar(a, bytes(b), c))


# ---------------------------------------------------------------- bombs

BOMB_SIZE = 8 * 2 ** 30
CHUNK = bytes(1 << 20)


def bomb_stream(sink):
    """Feed the 8 GiB tar into sink(bytes) without holding it in memory."""
    sink(header("zeros", b"0", BOMB_SIZE))
    assert BOMB_SIZE % len(CHUNK) == 0 and BOMB_SIZE % BLOCK == 0
    for _ in range(BOMB_SIZE // len(CHUNK)):
        sink(CHUNK)
    sink(END)


def case_bombs(out):
    with open(os.path.join(out, "bomb.tar.gz"), "wb") as f:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9,
                           fileobj=f, mtime=0) as gz:
            bomb_stream(gz.write)
    with open(os.path.join(out, "bomb.tar.zst"), "wb") as f:
        proc = subprocess.Popen(["zstd", "-19", "--long", "-q", "-c"],
                                stdin=subprocess.PIPE, stdout=f)
        bomb_stream(proc.stdin.write)
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("zstd failed with status %d" % proc.returncode)


def case_nested_bomb(out):
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip wrapper, mtime 0
    parts = [comp.compress(CHUNK) for _ in range(1024)]  # 1 GiB of zeros
    parts.append(comp.flush())
    inner = b"".join(parts)
    write(out, "bomb-nested.tar.gz",
          gzip.compress(tar(reg("inner.gz", inner)), compresslevel=0,
                        mtime=0))


# ---------------------------------------------------------------- OCI


def sha(data):
    return hashlib.sha256(data).hexdigest()


def jdump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer1():
    return tar(
        dir_("etc/"),
        reg("etc/hostname", "good\n"),
        dir_("bin/"),
        reg("bin/busybox", "#!/bin/busybox\n" + "x" * 100 + "\n", 0o755),
        sym("bin/sh", "busybox"),
        hard("bin/ash", "bin/busybox"),
        dir_("opt/"),
        reg("opt/old", "old\n"),
    )


def layer2_good():
    return tar(
        dir_("etc/"),
        header("etc/.wh.hostname", b"0", 0),
        dir_("opt/"),
        header("opt/.wh..wh..opq", b"0", 0),
        reg("opt/new", "new\n"),
    )


def layer2_dotdot():
    return tar(
        header(".wh...", b"0", 0),
        dir_("a/"),
        header("a/.wh..", b"0", 0),
    )


def layer2_escape():
    return tar(header("../.wh.x", b"0", 0))


def image(layers):
    """(config bytes, manifest bytes, [(gz blob, tar bytes)])."""
    blobs = [(gzip.compress(t, compresslevel=9, mtime=0), t) for t in layers]
    config = jdump({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + sha(t) for t in layers]},
    })
    manifest = jdump({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + sha(config), "size": len(config)},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + sha(gz), "size": len(gz)}
                   for gz, _ in blobs],
    })
    return config, manifest, blobs


def layout_files(layers, corrupt_layer=None):
    """{relative path: bytes} of an OCI image layout (directories implied)."""
    config, manifest, blobs = image(layers)
    index = jdump({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + sha(manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    })
    files = {
        "oci-layout": jdump({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
        "blobs/sha256/" + sha(config): config,
        "blobs/sha256/" + sha(manifest): manifest,
    }
    for i, (gz, _) in enumerate(blobs):
        if i == corrupt_layer:
            bad = bytearray(gz)
            bad[4] ^= 0x01  # gzip MTIME: still decompresses the same
            files["blobs/sha256/" + sha(gz)] = bytes(bad)
        else:
            files["blobs/sha256/" + sha(gz)] = gz
    return files


def write_tree(out, name, files):
    root = os.path.join(out, name)
    if os.path.isdir(root):
        shutil.rmtree(root)
    for rel, data in sorted(files.items()):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(os.path.dirname(path), os.path.basename(path), data)
        os.utime(path, (MTIME, MTIME))
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        os.utime(dirpath, (MTIME, MTIME))


def tar_of_files(files):
    """A tar of {path: bytes} with the directories before their entries."""
    members, dirs = [], set()
    for rel in sorted(files):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i]) + "/"
            if d not in dirs:
                dirs.add(d)
                members.append(dir_(d))
        members.append(reg(rel, files[rel]))
    return tar(*members)


def case_oci(out):
    good = [layer1(), layer2_good()]
    write_tree(out, "oci-bad-digest", layout_files([layer1()], 0))
    good_files = layout_files(good)
    write_tree(out, "oci-good", good_files)
    write_tree(out, "whiteout-dotdot", layout_files([layer1(),
                                                     layer2_dotdot()]))
    write_tree(out, "whiteout-escape", layout_files([layer1(),
                                                     layer2_escape()]))
    write(out, "oci-archive-good.tar", tar_of_files(good_files))

    config, _, _ = image(good)
    docker = {sha(config) + ".json": config}
    for t in good:
        docker[sha(t) + "/layer.tar"] = t
    docker["manifest.json"] = jdump([{
        "Config": sha(config) + ".json",
        "RepoTags": ["localhost/good:latest"],
        "Layers": [sha(t) + "/layer.tar" for t in good],
    }])
    write(out, "docker-archive-good.tar", tar_of_files(docker))


def main(argv):
    args = [a for a in argv[1:] if a != "--skip-bombs"]
    if len(args) != 1:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    out = args[0]
    os.makedirs(out, exist_ok=True)
    case_paths(out)
    case_links(out)
    case_replace(out)
    case_sparse(out)
    case_truncated(out)
    case_checksum(out)
    case_nested_bomb(out)
    case_oci(out)
    if "--skip-bombs" not in argv[1:]:
        case_bombs(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
