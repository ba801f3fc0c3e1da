#!/usr/bin/env python3
"""Baselines for the kernel-backend benchmarks: the same mounts vzstore's kernel
backend makes (src/mount/kernel), through the same system calls (fsopen,
fsconfig, fsmount, move_mount), without vzstore. x86_64 Linux 6.12+, root.

  kmount.py erofs IMAGE TARGET
      file-backed read-only EROFS mount of IMAGE, attached at TARGET
  kmount.py overlay LOWER OBJECTS UPPER WORK TARGET
      overlayfs as vzstore makes it (redirect_dir, metacopy, index on), with
      directory LOWER (e.g. an EROFS mount
      made by `erofs` above, shared by several overlays) as lower layer
  kmount.py time IMAGE OBJECTS UPPER WORK TARGET ROUNDS
      ROUNDS times: EROFS mount of IMAGE (detached) + overlayfs over it +
      move_mount to TARGET, timed inside this process (the system calls alone),
      then umount; prints the median and all rounds in ms. With index=on,
      UPPER and WORK must be new or used with this IMAGE only.
"""
import ctypes
import os
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount = 429, 430, 431, 432
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_RDONLY = 1
MOVE_MOUNT_F_EMPTY_PATH = 4
AT_FDCWD = -100


def call(nr, *args):
    r = libc.syscall(nr, *args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"syscall {nr}{args}: {os.strerror(e)}")
    return r


def fsopen(fstype):
    return call(SYS_fsopen, fstype.encode(), FSOPEN_CLOEXEC)


def setstr(fd, key, value):
    call(SYS_fsconfig, fd, FSCONFIG_SET_STRING, key.encode(), str(value).encode(), 0)


def setflag(fd, key):
    call(SYS_fsconfig, fd, FSCONFIG_SET_FLAG, key.encode(), None, 0)


def create_mount(fd, attrs=0):
    call(SYS_fsconfig, fd, FSCONFIG_CMD_CREATE, None, None, 0)
    m = call(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs)
    os.close(fd)
    return m


def attach(mfd, target):
    call(SYS_move_mount, mfd, b"", AT_FDCWD, target.encode(), MOVE_MOUNT_F_EMPTY_PATH)
    os.close(mfd)


def erofs(image):
    fd = fsopen("erofs")
    setstr(fd, "source", image)
    setflag(fd, "ro")
    return create_mount(fd, MOUNT_ATTR_RDONLY)


def overlay(lower, objects, upper, work):
    fd = fsopen("overlay")
    setstr(fd, "source", "vzstore-bench")
    setstr(fd, "lowerdir+", lower)
    setstr(fd, "datadir+", objects)
    setstr(fd, "upperdir", upper)
    setstr(fd, "workdir", work)
    for k, v in (("redirect_dir", "on"), ("metacopy", "on"), ("index", "on")):
        setstr(fd, k, v)
    return create_mount(fd)


def main(argv):
    cmd = argv[1]
    if cmd == "erofs":
        attach(erofs(argv[2]), argv[3])
    elif cmd == "overlay":
        attach(overlay(*argv[2:6]), argv[6])
    elif cmd == "time":
        image, objects, upper, work, target, rounds = argv[2:8]
        ms = []
        for _ in range(int(rounds)):
            s = time.perf_counter()
            lower = erofs(image)
            o = overlay(f"/proc/self/fd/{lower}", objects, upper, work)
            os.close(lower)
            attach(o, target)
            os.listdir(target)
            ms.append((time.perf_counter() - s) * 1000)
            if libc.umount2(target.encode(), 0) != 0:
                raise OSError(ctypes.get_errno(), f"umount {target}")
        srt = sorted(ms)
        print(f"{srt[(len(srt) - 1) // 2]:.2f} " + " ".join(f"{x:.2f}" for x in ms))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
