"""An NFS client that holds its file handles, as a Pi's kernel does with its root: libnfs (Debian's libnfs13) by ctypes.

This sandbox's kernel has no NFS client (CONFIG_NFS_FS is not set, and no modules load: CONFIG_MODULES is not set;
/proc/filesystems lists no nfs), so no `mount -t nfs` can run here. libnfs is a userspace NFSv3 client: it mounts
with the MOUNT protocol, keeps the file handle `nfs_open` returned, and reads by it, reconnecting its TCP connection
when the server goes away (nfs_set_autoreconnect, -1: for ever, as a `hard` mount retries). What it cannot show is
the kernel client's own timeouts (timeo/retrans) and caches.

    python -m tests.netns.nfs_client --server 192.168.0.14 --export /pis/ilmare --path /etc/issue --seconds 20

(or `--write TEXT`: write it over the file, as a Pi changing a file of the image does) and prints one JSON line per read: {"t": seconds since start, "ok": bytes read, or "error": libnfs's message}.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time

LIBNFS = "libnfs.so.13"
NFS_PORT, MOUNT_PORT = 2049, 627  # plans.netboot.pis


def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(LIBNFS, use_errno=True)
    lib.nfs_init_context.restype = ctypes.c_void_p
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [ctypes.c_void_p]
    lib.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    # libnfs 4.0's nfsc/libnfs.h: nfs_pread(nfs, nfsfh, uint64_t offset, uint64_t count, void *buf).
    lib.nfs_pread.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
    lib.nfs_pwrite.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p]
    lib.nfs_close.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.nfs_set_autoreconnect.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.nfs_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.nfs_set_version.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.nfs_destroy_context.argtypes = [ctypes.c_void_p]
    lib.nfs_parse_url_dir.restype = ctypes.POINTER(NfsUrl)
    lib.nfs_parse_url_dir.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class NfsUrl(ctypes.Structure):
    """libnfs's struct nfs_url (nfsc/libnfs.h): the server, the export, the file."""

    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--export", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--until-stopped", action="store_true", help="read until SIGTERM, however long, instead of --seconds")
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--write", help="write this text over the file (truncating it), once, and stop")
    args = parser.parse_args(argv)
    lib = _lib()
    start = time.monotonic()
    # One mount: every caller starts this client once the server is ready for it (test_pi_nfs's Server.start waits
    # until MOUNT and NFS answer their NULL call over TCP at the service address), so a failed mount is the server's
    # answer (a refused export) or its failure, not its start; retries on a clock of this client's own would hide either.
    nfs = lib.nfs_init_context()
    lib.nfs_set_version(nfs, 3)
    lib.nfs_set_autoreconnect(nfs, -1)
    # The ports as cmdline.txt gives them (port=2049) and the MOUNT port klibc falls back to: no portmapper asked.
    url = lib.nfs_parse_url_dir(nfs, f"nfs://{args.server}{args.export}?version=3&nfsport={NFS_PORT}&mountport={MOUNT_PORT}".encode())
    if not url or lib.nfs_mount(nfs, url.contents.server, url.contents.path) != 0:
        print(json.dumps({"t": 0, "error": f"mount: {lib.nfs_get_error(nfs).decode()}"}), flush=True)
        return 1
    # From here each call gives up after 2 s (the read is retried by the read loop below), so a read's wait shows in the
    # timeline. Not the mount's: libnfs's default is no timeout (-1, lib/init.c rpc_init_context), and a loaded machine's
    # slow answer is no failure; the caller bounds the whole client (its subprocess timeout, or its wait for a read).
    lib.nfs_set_timeout(nfs, 2000)
    fh = ctypes.c_void_p()
    if args.write is not None:
        data = args.write.encode()
        if lib.nfs_open(nfs, args.path.encode(), os.O_WRONLY | os.O_TRUNC, ctypes.byref(fh)) != 0 or lib.nfs_pwrite(
            nfs, fh, 0, len(data), data
        ) != len(data):
            print(json.dumps({"t": 0, "error": f"write: {lib.nfs_get_error(nfs).decode()}"}), flush=True)
            return 1
        lib.nfs_close(nfs, fh)
        print(json.dumps({"t": round(time.monotonic() - start, 2), "ok": len(data)}), flush=True)
        return 0
    if lib.nfs_open(nfs, args.path.encode(), os.O_RDONLY, ctypes.byref(fh)) != 0:
        print(json.dumps({"t": 0, "error": f"open: {lib.nfs_get_error(nfs).decode()}"}), flush=True)
        return 1
    buf = ctypes.create_string_buffer(65536)
    # SIGTERM ends the reads after the one under way, so a test stops them at an event, not after a guessed time.
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
    while not stopped and (args.until_stopped or time.monotonic() - start < args.seconds):
        n = lib.nfs_pread(nfs, fh, 0, len(buf), buf)
        t = round(time.monotonic() - start, 2)
        if n >= 0:
            print(json.dumps({"t": t, "ok": n, "data": buf.raw[:n].decode(errors="replace")}), flush=True)
        else:
            print(json.dumps({"t": t, "error": lib.nfs_get_error(nfs).decode()}), flush=True)
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
