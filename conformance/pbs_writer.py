#!/usr/bin/env python3
"""pbs_writer.py - independent PBS datastore writer (conformance tool).

Written from /work/shared/formats.md alone (stdlib only; zstd via the `zstd`
command-line tool).  It does NOT share code with the liverestore TypeScript
packages; its purpose is to cross-check them.

Usage:
  pbs_writer.py STORE --type vm --id 100 --time 2026-01-02T03:04:05Z \
      NAME=PATH [NAME=PATH ...] [--compress none|zstd] [--chunk-size BYTES] \
      [--dynamic-avg BYTES] [--all-prefix-dirs] [--json]

  NAME.img or NAME without extension -> fixed index   NAME.img.fidx
  NAME.blob                          -> blob file     NAME.blob
  NAME.<any other extension>         -> dynamic index NAME.<ext>.didx
                                        (PBS buzhash chunker)

Exit codes: 0 ok, 1 failure while writing (e.g. zstd missing), 2 usage error.
"""
import argparse
import bisect
import datetime
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib

# --- magics (formats.md, "Magic numbers") ---------------------------------
MAGIC_BLOB_PLAIN = bytes([66, 171, 56, 7, 190, 131, 112, 161])
MAGIC_BLOB_ZSTD = bytes([49, 185, 88, 66, 111, 182, 163, 127])
MAGIC_FIDX = bytes([47, 127, 65, 237, 145, 253, 15, 205])
MAGIC_DIDX = bytes([28, 145, 78, 165, 25, 186, 179, 205])

HEADER_SIZE = 4096
MIB = 1024 * 1024
MAX_BLOB = 128 * MIB

# --- PBS buzhash table (pbs-datastore/src/chunker.rs) ----------------------
# Generated from /tmp/research/chunker/table_8perline.txt when this script was
# written.  SHA-256 of the 256 little-endian u32 values:
# 5b52080d38287da9d2e278466e3e0db7ec98e5e8b226f50612a56fa012b1f660
BUZHASH_TABLE = (
    0x458be752, 0xc10748cc, 0xfbbcdbb8, 0x6ded5b68, 0xb10a82b5, 0x20d75648, 0xdfc5665f, 0xa8428801,
    0x7ebf5191, 0x841135c7, 0x65cc53b3, 0x280a597c, 0x16f60255, 0xc78cbc3e, 0x294415f5, 0xb938d494,
    0xec85c4e6, 0xb7d33edc, 0xe549b544, 0xfdeda5aa, 0x882bf287, 0x3116737c, 0x05569956, 0xe8cc1f68,
    0x0806ac5e, 0x22a14443, 0x15297e10, 0x50d090e7, 0x4ba60f6f, 0xefd9f1a7, 0x5c5c885c, 0x82482f93,
    0x9bfd7c64, 0x0b3e7276, 0xf2688e77, 0x8fad8abc, 0xb0509568, 0xf1ada29f, 0xa53efdfe, 0xcb2b1d00,
    0xf2a9e986, 0x6463432b, 0x95094051, 0x5a223ad2, 0x9be8401b, 0x61e579cb, 0x1a556a14, 0x5840fdc2,
    0x9261ddf6, 0xcde002bb, 0x52432bb0, 0xbf17373e, 0x7b7c222f, 0x2955ed16, 0x9f10ca59, 0xe840c4c9,
    0xccabd806, 0x14543f34, 0x1462417a, 0x0d4a1f9c, 0x087ed925, 0xd7f8f24c, 0x7338c425, 0xcf86c8f5,
    0xb19165cd, 0x9891c393, 0x325384ac, 0x0308459d, 0x86141d7e, 0xc922116a, 0xe2ffa6b6, 0x53f52aed,
    0x2cd86197, 0xf5b9f498, 0xbf319c8f, 0xe0411fae, 0x977eb18c, 0xd8770976, 0x9833466a, 0xc674df7f,
    0x8c297d45, 0x8ca48d26, 0xc49ed8e2, 0x7344f874, 0x556f79c7, 0x6b25eaed, 0xa03e2b42, 0xf68f66a4,
    0x8e8b09a2, 0xf2e0e62a, 0x0d3a9806, 0x9729e493, 0x8c72b0fc, 0x160b94f6, 0x450e4d3d, 0x7a320e85,
    0xbef8f0e1, 0x21d73653, 0x4e3d977a, 0x1e7b3929, 0x1cc6c719, 0xbe478d53, 0x8d752809, 0xe6d8c2c6,
    0x275f0892, 0xc8acc273, 0x4cc21580, 0xecc4a617, 0xf5f7be70, 0xe795248a, 0x375a2fe9, 0x425570b6,
    0x8898dcf8, 0xdc2d97c4, 0x0106114b, 0x364dc22f, 0x1e0cad1f, 0xbe63803c, 0x5f69fac2, 0x4d5afa6f,
    0x1bc0dfb5, 0xfb273589, 0x0ea47f7b, 0x3c1c2b50, 0x21b2a932, 0x6b1223fd, 0x2fe706a8, 0xf9bd6ce2,
    0xa268e64e, 0xe987f486, 0x3eacf563, 0x1ca2018c, 0x65e18228, 0x2207360a, 0x57cf1715, 0x34c37d2b,
    0x1f8f3cde, 0x93b657cf, 0x31a019fd, 0xe69eb729, 0x8bca7b9b, 0x4c9d5bed, 0x277ebeaf, 0xe0d8f8ae,
    0xd150821c, 0x31381871, 0xafc3f1b0, 0x927db328, 0xe95effac, 0x305a47bd, 0x426ba35b, 0x1233af3f,
    0x686a5b83, 0x50e072e5, 0xd9d3bb2a, 0x8befc475, 0x487f0de6, 0xc88dff89, 0xbd664d5e, 0x971b5d18,
    0x63b14847, 0xd7d3c1ce, 0x7f583cf3, 0x72cbcb09, 0xc0d0a81c, 0x7fa3429b, 0xe9158a1b, 0x225ea19a,
    0xd8ca9ea3, 0xc763b282, 0xbb0c6341, 0x020b8293, 0xd4cd299d, 0x58cfa7f8, 0x91b4ee53, 0x37e4d140,
    0x95ec764c, 0x30f76b06, 0x5ee68d24, 0x679c8661, 0xa41979c2, 0xf2b61284, 0x4fac1475, 0x0adb49f9,
    0x19727a23, 0x15a7e374, 0xc43a18d5, 0x3fb1aa73, 0x342fc615, 0x924c0793, 0xbee2d7f0, 0x8a279de9,
    0x4aa2d70c, 0xe24dd37f, 0xbe862c0b, 0x177c22c2, 0x5388e5ee, 0xcd8a7510, 0xf901b4fd, 0xdbc13dbc,
    0x6c0bae5b, 0x64efe8c7, 0x48b02079, 0x80331a49, 0xca3d8ae6, 0xf3546190, 0xfed7108b, 0xc49b941b,
    0x32baf4a9, 0xeb833a4a, 0x88a3f1a5, 0x3a91ce0a, 0x3cc27da1, 0x7112e684, 0x4a3096b1, 0x3794574c,
    0xa3c8b6f3, 0x1d213941, 0x6e0a2e00, 0x233479f1, 0x0f4cd82f, 0x6093edd2, 0x5d7d209e, 0x464fe319,
    0xd4dcac9e, 0x0db845cb, 0xfb5e4bc3, 0xe0256ce1, 0x09fb4ed1, 0x0914be1e, 0xa5bdb2c3, 0xc6eb57bb,
    0x30320350, 0x3f397e91, 0xa67791bc, 0x86bc0e2c, 0xefa0a7e2, 0xe9ff7543, 0xe733612c, 0xd185897b,
    0x329e5388, 0x91dd236b, 0x2ecb0d93, 0xf4d82a3d, 0x35b5c03f, 0xe4e606f0, 0x05b21843, 0x37b45964,
    0x5eff22f4, 0x6027f4cc, 0x77178b3c, 0xae507131, 0x7bf7cabc, 0xf9c18d66, 0x593ade65, 0xd95ddf11,
)

BUZHASH_TABLE_SHA256 = "5b52080d38287da9d2e278466e3e0db7ec98e5e8b226f50612a56fa012b1f660"
WINDOW = 64


def _rotl32(x, r):
    r &= 31
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r else x


def chunk_lengths_reference(data, avg):
    """Byte-at-a-time transcription of the PBS chunker (slow; for self-test)."""
    T = BUZHASH_TABLE
    mn, mx = avg >> 2, avg << 2
    mask = 2 * avg - 1
    minimum = mask - 2
    out = []
    h = 0
    win = bytearray(WINDOW)
    wsize = 0
    clen = 0
    for b in data:
        clen += 1
        if wsize < WINDOW:
            win[wsize] = b
            wsize += 1
            h = (((h << 1) | (h >> 31)) & 0xFFFFFFFF) ^ T[b]
            continue
        idx = (clen - 1) & 63
        leave = win[idx]
        win[idx] = b
        h = (((h << 1) | (h >> 31)) & 0xFFFFFFFF) ^ T[leave] ^ T[b]
        if clen >= mx or (clen >= mn and (h & mask) >= minimum):
            out.append(clen)
            h = 0
            wsize = 0
            clen = 0
    if clen:
        out.append(clen)
    return out


_TB = [bytes((t >> (8 * g)) & 0xFF for t in BUZHASH_TABLE) for g in range(4)]


def _window_hash_lanes(seg, nlanes):
    """Byte lanes 0..nlanes-1 of the full-window hash for every position of seg.

    Returns nlanes bytes objects of len(seg): out[g][n] = byte g of
    H[n] = XOR_{j=0..63} rotl32(T[seg[n-j]], j)   (bytes before seg count as
    absent).  Lane n of an int made with int.from_bytes(..., "little") is byte
    n, so "<< 8*w" moves every value w positions forward.  Built by doubling:
    S_1 = T[b];  S_2w[n] = S_w[n] ^ rotl32(S_w[n-w], w);  S_64 = S_32 ^ S_32
    shifted 32 positions (rotl by 32 is the identity).  Each 32-bit value is
    kept as four byte-lane ints B[0..3]; rotl by 8/16 permutes them, rotl by
    1/2/4 moves bits between neighbouring lanes.
    """
    L = len(seg)
    ext = L + 128
    B = [int.from_bytes(seg.translate(_TB[g]), "little") for g in range(4)]
    for r in (1, 2, 4):
        lo = int.from_bytes(bytes([(0xFF << r) & 0xFF]) * ext, "little")
        hi = int.from_bytes(bytes([0xFF >> (8 - r)]) * ext, "little")
        R = [((B[g] << r) & lo) | ((B[g - 1] >> (8 - r)) & hi) for g in range(4)]
        B = [B[g] ^ (R[g] << (8 * r)) for g in range(4)]
    B = [B[g] ^ (B[g - 1] << 64) for g in range(4)]    # w = 8: rotl 8
    B = [B[g] ^ (B[g - 2] << 128) for g in range(4)]   # w = 16: rotl 16
    return [(B[g] ^ (B[g] << 256)).to_bytes(L + 512, "little")[:L] for g in range(nlanes)]


def _break_positions(data, avg, block=4 * MIB):
    """Sorted indices n such that the full-window hash ending at byte n passes
    the PBS break test (h & mask) >= mask - 2.

    The rolling hash over a full 64-byte window is a pure function of the
    window: H[n] = XOR_{j=0..63} rotl32(T[b[n-j]], j), because the leaving byte
    has been rotated 64 times (a no-op on u32) when it is XORed out, and the
    first 64 bytes after a cut build exactly this value from h = 0.  So H is
    computed for all n at once with bytes.translate and big-integer
    shifts/XORs instead of a Python loop per byte.
    """
    mask = 2 * avg - 1
    k = mask.bit_length()
    nlanes = (k + 7) // 8
    # per-lane condition tables: 1 where the lane's bits satisfy the test:
    # bits 2..k-1 all set and (bit 0 or bit 1) set  <=>  (h & mask) >= mask-2
    conds = []
    for g in range(nlanes):
        lo_bit, hi_bit = 8 * g, min(k, 8 * g + 8)
        need = 0
        for bit in range(max(2, lo_bit), hi_bit):
            need |= 1 << (bit - lo_bit)
        tab = bytearray(256)
        for v in range(256):
            ok = (v & need) == need
            if g == 0:
                ok = ok and (v & 3) != 0
            tab[v] = 1 if ok else 0
        conds.append(bytes(tab))
    n = len(data)
    out = []
    a = 0
    while a < n:
        start = max(0, a - (WINDOW - 1))
        seg = bytes(data[start:a + block])
        L = len(seg)
        acc = None
        for g, lane in enumerate(_window_hash_lanes(seg, nlanes)):
            c = int.from_bytes(lane.translate(conds[g]), "little")
            acc = c if acc is None else (acc & c)
        if acc:
            cb = acc.to_bytes(L, "little")
            p = cb.find(1, WINDOW - 1)  # first full window in seg
            while p >= 0:
                out.append(start + p)
                p = cb.find(1, p + 1)
        a += block
    return out


def chunk_lengths(data, avg):
    """Chunk lengths produced by the PBS chunker (fast equivalent)."""
    if avg <= 0 or avg & (avg - 1):
        raise ValueError("average chunk size must be a power of two")
    n = len(data)
    if n == 0:
        return []
    cands = _break_positions(data, avg)
    # PBS tests a break only once the 64-byte window is full, i.e. from the
    # 65th byte of a chunk on; max-size cut likewise happens at >= 65 bytes.
    first = max(avg >> 2, WINDOW + 1)
    force = max(avg << 2, WINDOW + 1)
    out = []
    s = 0
    while s < n:
        lo = s + first - 1
        hi = s + force - 1
        i = bisect.bisect_left(cands, lo)
        if i < len(cands) and cands[i] <= hi:
            e = cands[i] + 1
        elif hi < n:
            e = hi + 1
        else:
            e = n
        out.append(e - s)
        s = e
    return out


# --- blobs ------------------------------------------------------------------
_ZSTD = None


def _zstd():
    global _ZSTD
    if _ZSTD is None:
        _ZSTD = shutil.which("zstd")
        if not _ZSTD:
            raise RuntimeError("the `zstd` command-line tool is required (apt-get install zstd)")
    return _ZSTD


def encode_blob(data, compress):
    """Return (blob_bytes, kind).  zstd level 1, kept only when smaller."""
    if compress == "zstd" and data:
        r = subprocess.run([_zstd(), "-1", "-q", "-c", "--no-check"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if r.returncode != 0:
            raise RuntimeError("zstd failed: " + r.stderr.decode(errors="replace").strip())
        comp = r.stdout
        if len(comp) < len(data):
            return MAGIC_BLOB_ZSTD + struct.pack("<I", zlib.crc32(comp)) + comp, "zstd"
    return MAGIC_BLOB_PLAIN + struct.pack("<I", zlib.crc32(data)) + data, "uncompressed"


class ChunkStore:
    def __init__(self, store, compress, all_prefix_dirs):
        self.base = os.path.join(store, ".chunks")
        self.compress = compress
        self.kinds = {}
        self.written = 0
        self.reused = 0
        os.makedirs(self.base, exist_ok=True)
        lock = os.path.join(store, ".lock")
        if not os.path.exists(lock):
            open(lock, "wb").close()
        if all_prefix_dirs:
            for i in range(0x10000):
                os.makedirs(os.path.join(self.base, "%04x" % i), exist_ok=True)

    def insert(self, data):
        digest = hashlib.sha256(data).digest()
        hx = digest.hex()
        d = os.path.join(self.base, hx[:4])
        path = os.path.join(d, hx)
        if os.path.exists(path):
            self.reused += 1
            return digest
        blob, kind = encode_blob(data, self.compress)
        if len(blob) > MAX_BLOB:
            raise RuntimeError("blob larger than 128 MiB")
        os.makedirs(d, exist_ok=True)
        tmp = path + ".tmp_%d" % os.getpid()
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.written += 1
        return digest


def fidx_bytes(digests, size, chunk_size, ctime):
    csum = hashlib.sha256(b"".join(digests)).digest()
    hdr = MAGIC_FIDX + os.urandom(16) + struct.pack("<q", ctime) + csum + struct.pack("<QQ", size, chunk_size)
    hdr += bytes(HEADER_SIZE - len(hdr))
    assert len(hdr) == HEADER_SIZE
    return hdr + b"".join(digests), csum


def didx_bytes(entries, ctime):
    raw = b"".join(struct.pack("<Q", end) + dg for end, dg in entries)
    csum = hashlib.sha256(raw).digest()
    hdr = MAGIC_DIDX + os.urandom(16) + struct.pack("<q", ctime) + csum
    hdr += bytes(HEADER_SIZE - len(hdr))
    assert len(hdr) == HEADER_SIZE
    return hdr + raw, csum


def write_fixed(cs, path, chunk_size):
    digests = []
    size = 0
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk_size)
            if not buf:
                break
            sha.update(buf)
            size += len(buf)
            digests.append(cs.insert(buf))
            if len(buf) < chunk_size:
                if f.read(1):
                    raise RuntimeError("short read from %s" % path)
                break
    return digests, size, sha.hexdigest()


def write_dynamic(cs, path, avg):
    with open(path, "rb") as f:
        data = f.read()
    lengths = chunk_lengths(data, avg)
    entries = []
    pos = 0
    mv = memoryview(data)
    for ln in lengths:
        dg = cs.insert(bytes(mv[pos:pos + ln]))
        pos += ln
        entries.append((pos, dg))
    assert pos == len(data)
    return entries, len(data), hashlib.sha256(data).hexdigest(), lengths


def parse_time(s):
    t = datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()), t.strftime("%Y-%m-%dT%H:%M:%SZ")


def power_of_two(v):
    return v > 0 and (v & (v - 1)) == 0


def archive_target(name):
    """Map NAME to (kind, archive file name)."""
    base = os.path.basename(name)
    if base != name or not name or name.startswith("."):
        raise ValueError("bad archive name %r" % name)
    if name.endswith((".fidx", ".didx")) or name == "index.json.blob":
        raise ValueError("archive name %r must not end in .fidx/.didx or be the manifest" % name)
    if name.endswith(".img"):
        return "fidx", name + ".fidx"
    if "." not in name:
        return "fidx", name + ".img.fidx"
    if name.endswith(".blob"):
        return "blob", name
    return "didx", name + ".didx"


def namespace_dirs(ns):
    """PBS's on-disk path of namespace a/b: ['ns', 'a', 'ns', 'b'] (checked as pbs-api-types does)."""
    if ns == "":
        return []
    names = ns.split("/")
    if len(names) > 7 or len(ns) > 256:
        raise ValueError("namespace %r: at most 7 levels and 256 characters" % ns)
    out = []
    for n in names:
        if not n or not (n[0].isascii() and (n[0].isalnum() or n[0] == "_")) or \
                any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in n):
            raise ValueError("namespace component %r is not [A-Za-z0-9_][A-Za-z0-9._-]*" % n)
        out += ["ns", n]
    return out


def write_pbs_extras(store, groupdir, snapdir, files, unprotected, compress):
    """What a PBS server keeps beside a snapshot: group notes and lock, .protected,
    client.log.blob (listed in the manifest), unknown unprotected fields and an earlier
    verify state, and .gc-status / .lock at the store root."""
    with open(os.path.join(groupdir, "notes"), "w") as f:
        f.write("written by pbs_writer.py\nsecond line\n")
    open(os.path.join(groupdir, ".lock"), "w").close()
    open(os.path.join(snapdir, ".protected"), "w").close()
    raw, _ = encode_blob(b"client log line\n" * 64, compress)
    with open(os.path.join(snapdir, "client.log.blob"), "wb") as f:
        f.write(raw)
    files.append({"filename": "client.log.blob", "crypt-mode": "none", "size": len(raw),
                  "csum": hashlib.sha256(raw).hexdigest()})
    unprotected["chunk_upload_stats"] = {"count": 1, "size": 1, "compressed_size": 1, "duplicates": 0}
    unprotected["notes"] = "pbs_writer.py extras"
    unprotected["verify_state"] = {
        "state": "ok", "upid": "UPID:pbs:00001234:0000ABCD:00000000:65A1B2C3:verify_snapshot:store\\x3avm-1:root@pam:"}
    with open(os.path.join(store, ".gc-status"), "w") as f:
        f.write('{"upid":null,"index-file-count":0}')
    open(os.path.join(store, ".lock"), "w").close()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a PBS datastore snapshot (conformance tool).")
    ap.add_argument("store")
    ap.add_argument("items", nargs="+", metavar="NAME=PATH")
    ap.add_argument("--type", dest="btype", required=True, choices=["vm", "ct", "host"])
    ap.add_argument("--id", dest="bid", required=True)
    ap.add_argument("--time", dest="btime", required=True, help="RFC 3339 UTC, e.g. 2026-01-02T03:04:05Z")
    ap.add_argument("--compress", choices=["none", "zstd"], default="zstd")
    ap.add_argument("--chunk-size", type=int, default=4 * MIB, help="fixed index chunk size (power of two, 64 KiB..4 MiB)")
    ap.add_argument("--dynamic-avg", type=int, default=4 * MIB, help="dynamic chunker average size (power of two)")
    ap.add_argument("--all-prefix-dirs", action="store_true", help="create all 65536 .chunks/XXXX dirs as PBS does (default: lazily)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    ap.add_argument("--ns", default="", help="PBS namespace a/b to write into (ns/a/ns/b/...)")
    ap.add_argument("--pbs-extras", action="store_true",
                    help="also write what PBS keeps beside a snapshot (notes, .protected, client.log.blob, ...)")
    args = ap.parse_args(argv)

    if not power_of_two(args.chunk_size) or not (64 * 1024 <= args.chunk_size <= 4 * MIB):
        ap.error("--chunk-size must be a power of two between 64 KiB and 4 MiB")
    if not power_of_two(args.dynamic_avg) or args.dynamic_avg < 64:
        ap.error("--dynamic-avg must be a power of two >= 64")
    if "/" in args.bid or args.bid in (".", ".."):
        ap.error("bad --id")
    try:
        epoch, tname = parse_time(args.btime)
    except ValueError:
        ap.error("--time must look like 2026-01-02T03:04:05Z")
    items = []
    seen = set()
    for it in args.items:
        if "=" not in it:
            ap.error("expected NAME=PATH, got %r" % it)
        name, path = it.split("=", 1)
        try:
            kind, fname = archive_target(name)
        except ValueError as e:
            ap.error(str(e))
        if fname in seen:
            ap.error("duplicate archive %s" % fname)
        if not os.path.isfile(path):
            ap.error("no such file: %s" % path)
        seen.add(fname)
        items.append((kind, fname, path))

    try:
        nsdirs = namespace_dirs(args.ns)
    except ValueError as e:
        ap.error(str(e))
    relsnap = os.path.join(*nsdirs, args.btype, args.bid, tname)
    snapdir = os.path.join(args.store, relsnap)
    if os.path.exists(os.path.join(snapdir, "index.json.blob")):
        print("FAIL snapshot %s already exists" % snapdir, file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        cs = ChunkStore(args.store, args.compress, args.all_prefix_dirs)
        os.makedirs(snapdir, exist_ok=True)
        owner = os.path.join(os.path.dirname(snapdir), "owner")
        if not os.path.exists(owner):
            with open(owner, "w") as f:
                f.write("root@pam\n")
        files = []
        summary = []
        for kind, fname, path in items:
            if kind == "fidx":
                digests, size, sha = write_fixed(cs, path, args.chunk_size)
                raw, csum = fidx_bytes(digests, size, args.chunk_size, epoch)
                info = {"name": fname, "size": size, "sha256": sha, "chunks": len(digests),
                        "chunk_size": args.chunk_size, "index_csum": csum.hex()}
            elif kind == "didx":
                entries, size, sha, lengths = write_dynamic(cs, path, args.dynamic_avg)
                raw, csum = didx_bytes(entries, epoch)
                info = {"name": fname, "size": size, "sha256": sha, "chunks": len(entries),
                        "chunk_lengths": lengths, "index_csum": csum.hex()}
            else:
                with open(path, "rb") as f:
                    data = f.read()
                raw, _ = encode_blob(data, args.compress)
                size = len(raw)
                csum = hashlib.sha256(raw).digest()
                info = {"name": fname, "size": size, "sha256": hashlib.sha256(data).hexdigest(),
                        "chunks": 0, "raw_sha256": csum.hex()}
            with open(os.path.join(snapdir, fname), "wb") as f:
                f.write(raw)
            files.append({"filename": fname, "crypt-mode": "none", "size": size, "csum": csum.hex()})
            summary.append(info)
        unprotected = {}
        if args.pbs_extras:
            write_pbs_extras(args.store, os.path.dirname(snapdir), snapdir, files, unprotected, args.compress)
        manifest = {
            "backup-type": args.btype,
            "backup-id": args.bid,
            "backup-time": epoch,
            "files": files,
            "unprotected": unprotected,
        }
        mjson = json.dumps(manifest, indent=2).encode()
        with open(os.path.join(snapdir, "index.json.blob"), "wb") as f:
            f.write(MAGIC_BLOB_PLAIN + struct.pack("<I", zlib.crc32(mjson)) + mjson)
    except (OSError, RuntimeError) as e:
        print("FAIL %s" % e, file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    if args.json:
        print(json.dumps({"snapshot": relsnap, "ns": args.ns, "archives": summary,
                          "chunks_written": cs.written, "chunks_reused": cs.reused,
                          "blob_kinds": cs.kinds, "seconds": round(elapsed, 3)}, indent=2))
    else:
        print("snapshot %s" % relsnap)
        for s in summary:
            print("  %s size=%d sha256=%s chunks=%d" % (s["name"], s["size"], s["sha256"], s["chunks"]))
        print("chunks written=%d reused=%d kinds=%s (%.2fs)" % (cs.written, cs.reused, json.dumps(cs.kinds), elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
