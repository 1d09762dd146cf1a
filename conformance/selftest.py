#!/usr/bin/env python3
"""selftest.py - checks pbs_writer.py and pbs_reader.py against each other.

  python3 conformance/selftest.py        (needs the `zstd` CLI)

1. chunker golden values (from a Rust transcription of PBS's chunker.rs)
   and the fast chunker against the byte-at-a-time reference;
2. write a store from generated files (random, zeros, text, an image whose
   size is not a multiple of the chunk size, a tiny file for .didx, a .blob)
   with --compress none and zstd, read it back, compare SHA-256s;
3. corrupt a chunk / an index / the manifest and expect exit 1 naming it.
Exit 0 when all pass.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
WRITER = os.path.join(HERE, "pbs_writer.py")
READER = os.path.join(HERE, "pbs_reader.py")
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import pbs_writer  # noqa: E402

FAILED = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILED.append(what)


def run(*args):
    t = time.monotonic()
    r = subprocess.run([sys.executable] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t


def xorshift_bytes(n, seed=1):
    x = seed
    out = bytearray(n)
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)


def golden():
    counters = b"".join(i.to_bytes(4, "little") for i in range(262144))
    t = time.monotonic()
    got = pbs_writer.chunk_lengths(counters, 65536)
    dt = time.monotonic() - t
    check(got == [143377, 262144, 262144, 262144, 118767], "chunker: 1 MiB u32 counters avg 64 KiB -> %s (%.3fs)" % (got, dt))
    got = pbs_writer.chunk_lengths(bytes(1 << 20), 65536)
    check(got == [262144] * 4, "chunker: 1 MiB zeros avg 64 KiB -> %s" % got)
    got = pbs_writer.chunk_lengths_reference(counters, 65536)
    check(got == [143377, 262144, 262144, 262144, 118767], "reference chunker: counters")
    # xorshift32(seed 1), low byte, 4 MiB, avg 64 KiB: from the Rust transcription
    exp = [118279, 49494, 16621, 62859, 32169, 66228, 67344, 33968, 39993, 27037, 102239, 80474, 46520,
           166120, 110721, 70541, 21051, 51013, 137936, 79943, 108391, 72592, 31237, 35616, 81500, 55704,
           24711, 75723, 121346, 22775, 100931, 38844, 33261, 19380, 18067, 24619, 63227, 46026, 23907,
           59584, 58313, 85469, 36646, 43423, 44922, 20064, 190500, 64208, 76639, 47065, 146904, 17783,
           65811, 190746, 19346, 34760, 31597, 178987, 108512, 27257, 51427, 29016, 18766, 48917, 86859,
           20246, 12130]
    data = xorshift_bytes(4 << 20)
    t = time.monotonic()
    got = pbs_writer.chunk_lengths(data, 65536)
    dt = time.monotonic() - t
    check(got == exp, "chunker: 4 MiB xorshift32 avg 64 KiB, %d chunks (%.3fs)" % (len(got), dt))
    rnd = random.Random(5)
    for avg in (64, 1024, 65536):
        for n in (0, 1, 63, 64, 65, 5000, 200000):
            d = bytes(rnd.getrandbits(8) for _ in range(n)) if n < 100000 else os.urandom(n // 2) + bytes(n // 2)
            if pbs_writer.chunk_lengths(d, avg) != pbs_writer.chunk_lengths_reference(d, avg):
                check(False, "fast chunker == reference (avg %d, n %d)" % (avg, n))
                return
    check(True, "fast chunker == byte-at-a-time reference on 21 random inputs")


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))


def roundtrip(tmp, compress):
    src = os.path.join(tmp, "src")
    os.makedirs(src, exist_ok=True)
    rnd = random.Random(42)
    files = {
        # 3 MiB + 12345 bytes: random, then zeros, then random (image; size not a multiple of 64 KiB)
        "drive-scsi0": os.urandom(1 << 20) + bytes(1 << 20) + os.urandom((1 << 20) + 12345),
        "zeros.img": bytes(2 << 20),
        "notes.txt": ("".join("line %d: %s\n" % (i, rnd.choice(["alpha", "beta", "gamma delta"]))
                              for i in range(120000))).encode(),
        "data.pxar": os.urandom(3 << 20) + bytes(1 << 20),
        "tiny.conf": b"x",
        "qemu-server.conf.blob": b"boot: order=scsi0\nmemory: 2048\n" * 40,
    }
    paths = {}
    for name, data in files.items():
        p = os.path.join(src, name)
        with open(p, "wb") as f:
            f.write(data)
        paths[name] = p
    store = os.path.join(tmp, "store-" + compress)
    args = [WRITER, store, "--type", "vm", "--id", "100", "--time", "2026-01-02T03:04:05Z",
            "--compress", compress, "--chunk-size", "65536", "--dynamic-avg", "65536", "--json"]
    args += ["%s=%s" % (n, p) for n, p in paths.items()]
    rc, out, err, dt = run(*args)
    check(rc == 0, "writer (%s) exit 0 (%.2fs) %s" % (compress, dt, err.strip()))
    if rc:
        return
    wsum = json.loads(out)
    snap = "vm/100/2026-01-02T03:04:05Z"
    rc, out, err, dt = run(READER, store, snap, "--json")
    check(rc == 0, "reader (%s) exit 0 on the whole snapshot (%.2fs) %s" % (compress, dt, err.strip()))
    rsum = json.loads(out)
    expect = {
        "drive-scsi0.img.fidx": files["drive-scsi0"],
        "zeros.img.fidx": files["zeros.img"],
        "notes.txt.didx": files["notes.txt"],
        "data.pxar.didx": files["data.pxar"],
        "tiny.conf.didx": files["tiny.conf"],
        "qemu-server.conf.blob": files["qemu-server.conf.blob"],
    }
    got = {a["name"]: a for a in rsum["archives"]}
    for name, data in expect.items():
        a = got.get(name, {})
        check(a.get("sha256") == hashlib.sha256(data).hexdigest(),
              "%s: reader SHA-256 == source (%s, chunks %s, kinds %s)" % (name, compress, a.get("chunks"), a.get("blob_kinds")))
    if compress == "zstd":
        k = got["notes.txt.didx"]["blob_kinds"]
        check(k.get("zstd", 0) > 0, "text chunks stored zstd-compressed")
        k = got["drive-scsi0.img.fidx"]["blob_kinds"]
        check(k.get("uncompressed", 0) > 0, "random chunks stored uncompressed (zstd not smaller)")
    for w in wsum["archives"]:
        if "chunk_lengths" in w:
            check(w["chunk_lengths"] == pbs_writer.chunk_lengths(files[w["name"][:-5]], 65536),
                  "%s chunk lengths" % w["name"])
    # --out
    outp = os.path.join(tmp, "out.img")
    rc, out, err, dt = run(READER, store, snap, "--archive", "drive-scsi0.img", "--out", outp)
    with open(outp, "rb") as f:
        check(rc == 0 and f.read() == files["drive-scsi0"], "--archive drive-scsi0.img --out reproduces the image (%.2fs)" % dt)
    return store, snap


def corruption(tmp, store, snap):
    # work on copies so each corruption is independent
    def fresh(tag):
        s = os.path.join(tmp, "c-" + tag)
        shutil.copytree(store, s)
        return s

    snapdir_rel = snap
    # 1. flip a byte in one chunk file of drive-scsi0
    s = fresh("chunk")
    with open(os.path.join(s, snapdir_rel, "drive-scsi0.img.fidx"), "rb") as f:
        raw = f.read()
    digest = raw[4096 + 32 * 5:4096 + 32 * 6].hex()
    chunk = os.path.join(s, ".chunks", digest[:4], digest)
    flip(chunk, os.path.getsize(chunk) // 2)
    rc, out, err, _ = run(READER, s, snap)
    fails = [l for l in out.splitlines() if l.startswith("FAIL")]
    check(rc == 1 and len(fails) == 1 and digest in fails[0], "flipped payload byte in chunk -> exit 1, one FAIL naming it: %s" % (fails[:1],))
    # 2. flip a payload byte and fix the CRC -> digest mismatch
    s = fresh("chunk2")
    chunk = os.path.join(s, ".chunks", digest[:4], digest)
    with open(chunk, "rb") as f:
        blob = bytearray(f.read())
    if blob[:8] == pbs_writer.MAGIC_BLOB_PLAIN:
        blob[100] ^= 1
        blob[8:12] = struct.pack("<I", zlib.crc32(bytes(blob[12:])))
        with open(chunk, "wb") as f:
            f.write(blob)
        rc, out, err, _ = run(READER, s, snap)
        check(rc == 1 and digest in out and "SHA-256" in out, "payload changed with CRC fixed -> digest mismatch reported")
    # 3. flip a header (magic) byte of a chunk
    s = fresh("magic")
    chunk = os.path.join(s, ".chunks", digest[:4], digest)
    flip(chunk, 3)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and digest in out and "magic" in out, "flipped magic byte -> unknown blob magic reported")
    # 4. delete a chunk
    s = fresh("missing")
    os.unlink(os.path.join(s, ".chunks", digest[:4], digest))
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and digest in out, "missing chunk -> exit 1 naming it")
    # 5. flip a digest byte in the fidx -> index_csum/manifest mismatch
    s = fresh("fidx")
    flip(os.path.join(s, snap, "drive-scsi0.img.fidx"), 4096 + 7)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and "index_csum" in out, "flipped digest in .fidx -> index_csum mismatch")
    # 6. truncate the fidx
    s = fresh("trunc")
    p = os.path.join(s, snap, "drive-scsi0.img.fidx")
    os.truncate(p, os.path.getsize(p) - 1)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and "file length" in out, "truncated .fidx -> file length failure")
    # 7. flip a byte of a didx end offset
    s = fresh("didx")
    flip(os.path.join(s, snap, "data.pxar.didx"), 4096 + 2)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and "data.pxar.didx" in out, "flipped end offset in .didx -> failure")
    # 8. flip a byte of the manifest
    s = fresh("manifest")
    flip(os.path.join(s, snap, "index.json.blob"), 40)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and "index.json.blob" in out and "CRC" in out, "flipped manifest byte -> CRC failure")
    # 9. non-zero reserved header byte
    s = fresh("reserved")
    flip(os.path.join(s, snap, "zeros.img.fidx"), 200)
    rc, out, err, _ = run(READER, s, snap)
    check(rc == 1 and "reserved" in out, "non-zero reserved .fidx header byte -> failure")


def deflate_blob(tmp):
    """A liverestore DEFLATE chunk (written here by hand) must be accepted."""
    store = os.path.join(tmp, "store-deflate")
    src = os.path.join(tmp, "d.img")
    data = (b"liverestore " * 20000)[:200000]
    with open(src, "wb") as f:
        f.write(data)
    rc, out, err, _ = run(WRITER, store, "--type", "ct", "--id", "7", "--time", "2026-01-02T03:04:05Z",
                          "--compress", "none", "--chunk-size", "65536", "d=" + src)
    snap = "ct/7/2026-01-02T03:04:05Z"
    with open(os.path.join(store, snap, "d.img.fidx"), "rb") as f:
        raw = f.read()
    magic = hashlib.sha256(b"liverestore deflate compressed blob v1").digest()[:8]
    for i in range((len(raw) - 4096) // 32):
        hx = raw[4096 + 32 * i:4096 + 32 * (i + 1)].hex()
        p = os.path.join(store, ".chunks", hx[:4], hx)
        with open(p, "rb") as f:
            plain = f.read()[12:]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(plain) + c.flush()
        with open(p, "wb") as f:
            f.write(magic + struct.pack("<I", zlib.crc32(payload)) + payload)
    rc, out, err, _ = run(READER, store, snap, "--json")
    s = json.loads(out)
    check(rc == 0 and s["archives"][0]["sha256"] == hashlib.sha256(data).hexdigest()
          and s["archives"][0]["blob_kinds"] == {"deflate": 4}, "DEFLATE blobs decoded: %s" % s["archives"][0].get("blob_kinds"))


def main():
    if not shutil.which("zstd"):
        print("FAIL the zstd command-line tool is missing (apt-get install zstd)")
        return 1
    t0 = time.monotonic()
    golden()
    tmp = tempfile.mkdtemp(prefix="pbs-conformance-")
    try:
        res = roundtrip(tmp, "none")
        res = roundtrip(tmp, "zstd") or res
        if res:
            corruption(tmp, *res)
        deflate_blob(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %d failure(s), %.1fs" % ("FAILED" if FAILED else "PASSED", len(FAILED), time.monotonic() - t0))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
