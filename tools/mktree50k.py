#!/usr/bin/env python3
"""Write the 50,001-entry test tree of the mount-time benchmarks into DIR (which
must not exist): the root, 25 directories of 19 directories each, 49,500 files
spread over those 475; every 10th file 100 B to 8 KiB (above the kernel image's
64-byte inline limit: a redirect to its object), the others a few bytes.
Usage: mktree50k.py DIR"""
import os
import sys

root = sys.argv[1]
leaves = [f"{root}/g{g:02}/d{d:02}" for g in range(25) for d in range(19)]
for leaf in leaves:
    os.makedirs(leaf)
for k in range(49_500):
    with open(f"{leaves[k % len(leaves)]}/file-{k:05}.conf", "w") as fh:
        line = f"entry {k}\n"
        fh.write(line * ((100 + k * 37 % 8000) // len(line) + 1) if k % 10 == 0 else line)
