#!/usr/bin/env python3
"""pbs_reader.py - independent, strict PBS datastore snapshot reader (conformance tool).

Written from /work/shared/formats.md alone (stdlib only; zstd via the `zstd`
command-line tool).  It does NOT share code with the liverestore TypeScript
packages; its purpose is to cross-check them.

Usage:
  pbs_reader.py STORE SNAPSHOT [--archive NAME] [--out FILE] [--json]

  SNAPSHOT is `<type>/<id>/<time>` relative to STORE (or a path to the
  snapshot directory).  Every archive listed in the manifest is checked
  (only NAME with --archive; NAME may omit the .fidx/.didx suffix).
  --out FILE writes the reassembled image of the single selected archive.

Exit codes:
  0  everything checked and is consistent
  1  at least one problem; one line `FAIL <what>` per problem
     (stdout; stderr with --json)
  2  usage error / snapshot not found
  3  no problem found, but some content is encrypted and could not be
     checked (no AES-GCM in the stdlib): "encrypted: not checked"
"""
import argparse
import calendar
import collections
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib

# --- magics (formats.md, "Magic numbers") ---------------------------------
BLOB_KINDS = {
    bytes([66, 171, 56, 7, 190, 131, 112, 161]): "uncompressed",
    bytes([49, 185, 88, 66, 111, 182, 163, 127]): "zstd",
    bytes([123, 103, 133, 190, 34, 45, 76, 240]): "encrypted",
    bytes([230, 89, 27, 191, 11, 191, 216, 11]): "encrypted+zstd",
}
# liverestore's own DEFLATE blob: first 8 bytes of SHA-256 of a documented string.
DEFLATE_STRING = "liverestore deflate compressed blob v1"
# The string of the encrypted DEFLATE variant is not given in formats.md; this
# default is an assumption -- override with --enc-deflate-string.
ENC_DEFLATE_STRING_DEFAULT = "liverestore deflate compressed encrypted blob v1"
MAGIC_FIDX = bytes([47, 127, 65, 237, 145, 253, 15, 205])
MAGIC_DIDX = bytes([28, 145, 78, 165, 25, 186, 179, 205])

HEADER_SIZE = 4096
PLAIN_HDR = 12
ENC_HDR = 44
MIB = 1024 * 1024
MAX_BLOB = 128 * MIB
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z$")


def magic_of(s):
    return hashlib.sha256(s.encode()).digest()[:8]


class Checker:
    def __init__(self, store, enc_deflate_string):
        self.store = store
        self.failures = []
        self.encrypted_seen = False
        self.kinds = dict(BLOB_KINDS)
        self.kinds[magic_of(DEFLATE_STRING)] = "deflate"
        self.kinds[magic_of(enc_deflate_string)] = "encrypted+deflate"
        self._zstd = None
        # digest -> plaintext (small LRU) / verified lengths / known-bad
        self.cache = collections.OrderedDict()
        self.cache_bytes = 0
        self.cache_limit = 64 * MIB
        self.good = {}
        self.bad = {}
        self.bad_refs = {}

    def fail(self, what):
        self.failures.append(what)

    # --- blobs ---------------------------------------------------------------
    def zstd_decompress(self, payload):
        if self._zstd is None:
            self._zstd = shutil.which("zstd") or ""
        if not self._zstd:
            raise ValueError("zstd command-line tool not installed")
        r = subprocess.run([self._zstd, "-d", "-q", "-c"], input=payload,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if r.returncode != 0:
            raise ValueError("zstd -d failed: " + r.stderr.decode(errors="replace").strip())
        return r.stdout

    def decode_blob(self, raw):
        """Return (kind, plaintext or None if encrypted).  Raises ValueError."""
        if len(raw) < PLAIN_HDR:
            raise ValueError("blob shorter than 12-byte header (%d bytes)" % len(raw))
        if len(raw) > MAX_BLOB + ENC_HDR:
            raise ValueError("blob larger than 128 MiB (%d bytes)" % len(raw))
        kind = self.kinds.get(raw[:8])
        if kind is None:
            raise ValueError("unknown blob magic %s" % raw[:8].hex())
        (crc,) = struct.unpack_from("<I", raw, 8)
        hdr = ENC_HDR if kind.startswith("encrypted") else PLAIN_HDR
        if len(raw) < hdr:
            raise ValueError("%s blob shorter than %d-byte header" % (kind, hdr))
        got = zlib.crc32(raw[hdr:])
        if got != crc:
            raise ValueError("CRC-32 mismatch (header %08x, computed %08x) in %s blob" % (crc, got, kind))
        payload = raw[hdr:]
        if kind == "uncompressed":
            return kind, payload
        if kind == "zstd":
            return kind, self.zstd_decompress(payload)
        if kind == "deflate":
            d = zlib.decompressobj(-15)
            try:
                out = d.decompress(payload) + d.flush()
            except zlib.error as e:
                raise ValueError("raw DEFLATE error: %s" % e)
            if not d.eof:
                raise ValueError("truncated raw DEFLATE stream")
            if d.unused_data:
                raise ValueError("%d bytes after end of DEFLATE stream" % len(d.unused_data))
            return kind, out
        return kind, None  # encrypted kinds

    # --- chunks --------------------------------------------------------------
    def chunk_path(self, digest):
        hx = digest.hex()
        return os.path.join(self.store, ".chunks", hx[:4], hx)

    def get_chunk(self, digest, where, kinds_count, encrypted_archive):
        """Return plaintext, or None (problem recorded / encrypted)."""
        if digest in self.cache:
            self.cache.move_to_end(digest)
            kinds_count[self.good[digest][1]] = kinds_count.get(self.good[digest][1], 0) + 1
            return self.cache[digest]
        if digest in self.bad:
            # same broken chunk referenced again: already reported once
            self.bad_refs[digest] = self.bad_refs.get(digest, 1) + 1
            return None
        path = self.chunk_path(digest)
        rel = os.path.relpath(path, self.store)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            return self._bad(digest, where, "cannot read %s: %s" % (rel, e.strerror or e))
        try:
            kind, plain = self.decode_blob(raw)
        except ValueError as e:
            return self._bad(digest, where, "%s: %s" % (rel, e))
        kinds_count[kind] = kinds_count.get(kind, 0) + 1
        if plain is None:
            if not encrypted_archive:
                return self._bad(digest, where, "%s: %s blob in an archive with crypt-mode none" % (rel, kind))
            self.encrypted_seen = True
            return None
        if encrypted_archive:
            return self._bad(digest, where, "%s: unencrypted %s blob in an encrypted archive" % (rel, kind))
        got = hashlib.sha256(plain).digest()
        if got != digest:
            return self._bad(digest, where, "%s: SHA-256 of plaintext is %s" % (rel, got.hex()))
        self.good[digest] = (len(plain), kind)
        self.cache[digest] = plain
        self.cache_bytes += len(plain)
        while self.cache_bytes > self.cache_limit and len(self.cache) > 1:
            _, old = self.cache.popitem(last=False)
            self.cache_bytes -= len(old)
        return plain

    def _bad(self, digest, where, msg):
        self.bad[digest] = msg
        self.fail("chunk %s (%s): %s" % (digest.hex(), where, msg))
        return None

    # --- indexes -------------------------------------------------------------
    def read_fidx(self, name, raw, mf):
        info = {"name": name, "index": "fidx"}
        ok = True
        if len(raw) < HEADER_SIZE:
            self.fail("%s: file is %d bytes, shorter than the 4096-byte header" % (name, len(raw)))
            return None
        if raw[:8] != MAGIC_FIDX:
            self.fail("%s: bad fixed index magic %s" % (name, raw[:8].hex()))
            return None
        uuid = raw[8:24]
        (ctime,) = struct.unpack_from("<q", raw, 24)
        csum = raw[32:64]
        size, chunk_size = struct.unpack_from("<QQ", raw, 64)
        info.update(uuid=uuid.hex(), ctime=ctime, size=size, chunk_size=chunk_size, index_csum=csum.hex())
        if any(raw[80:HEADER_SIZE]):
            self.fail("%s: reserved header bytes 80..4095 are not zero" % name)
            ok = False
        if chunk_size == 0 or chunk_size & (chunk_size - 1):
            self.fail("%s: chunk_size %d is not a power of two" % (name, chunk_size))
            return None
        if not (64 * 1024 <= chunk_size <= 4 * MIB):
            self.fail("%s: chunk_size %d outside 64 KiB .. 4 MiB" % (name, chunk_size))
            ok = False
        n = -(-size // chunk_size)
        if len(raw) != HEADER_SIZE + 32 * n:
            self.fail("%s: file length %d != 4096 + %d*32 (size %d, chunk_size %d)"
                      % (name, len(raw), n, size, chunk_size))
            return None
        digests = [raw[HEADER_SIZE + 32 * i:HEADER_SIZE + 32 * (i + 1)] for i in range(n)]
        real = hashlib.sha256(raw[HEADER_SIZE:]).digest()
        if real != csum:
            self.fail("%s: index_csum %s != SHA-256 of digests %s" % (name, csum.hex(), real.hex()))
            ok = False
        ok &= self.check_manifest_entry(name, mf, size, csum)
        # (offset, length, digest) for every chunk
        spans = []
        for i, d in enumerate(digests):
            spans.append((i * chunk_size, min(chunk_size, size - i * chunk_size), d))
        return info, spans, ok

    def read_didx(self, name, raw, mf):
        info = {"name": name, "index": "didx"}
        ok = True
        if len(raw) < HEADER_SIZE:
            self.fail("%s: file is %d bytes, shorter than the 4096-byte header" % (name, len(raw)))
            return None
        if raw[:8] != MAGIC_DIDX:
            self.fail("%s: bad dynamic index magic %s" % (name, raw[:8].hex()))
            return None
        (ctime,) = struct.unpack_from("<q", raw, 24)
        csum = raw[32:64]
        info.update(uuid=raw[8:24].hex(), ctime=ctime, index_csum=csum.hex())
        if any(raw[64:HEADER_SIZE]):
            self.fail("%s: reserved header bytes 64..4095 are not zero" % name)
            ok = False
        body = len(raw) - HEADER_SIZE
        if body % 40:
            self.fail("%s: file length %d is not 4096 + k*40" % (name, len(raw)))
            return None
        k = body // 40
        real = hashlib.sha256(raw[HEADER_SIZE:]).digest()
        if real != csum:
            self.fail("%s: index_csum %s != SHA-256 of entries %s" % (name, csum.hex(), real.hex()))
            ok = False
        spans = []
        prev = 0
        for i in range(k):
            off = HEADER_SIZE + 40 * i
            (end,) = struct.unpack_from("<Q", raw, off)
            d = raw[off + 8:off + 40]
            if end <= prev:
                self.fail("%s: entry %d end offset %d not greater than previous %d" % (name, i, end, prev))
                return None
            spans.append((prev, end - prev, d))
            prev = end
        info["size"] = prev
        ok &= self.check_manifest_entry(name, mf, prev, csum)
        return info, spans, ok

    def check_manifest_entry(self, name, mf, size, csum):
        ok = True
        if mf.get("size") != size:
            self.fail("%s: manifest size %r != index size %d" % (name, mf.get("size"), size))
            ok = False
        if mf.get("csum") != csum.hex():
            self.fail("%s: manifest csum %r != index_csum %s" % (name, mf.get("csum"), csum.hex()))
            ok = False
        return ok

    def assemble(self, name, spans, out, encrypted_archive, kinds):
        sha = hashlib.sha256()
        ok = True
        total = 0
        for i, (off, length, d) in enumerate(spans):
            plain = self.get_chunk(d, "%s chunk #%d at offset %d" % (name, i, off), kinds, encrypted_archive)
            if plain is None:
                ok = False
                data = bytes(length)  # placeholder to keep offsets
            elif len(plain) != length:
                self.fail("chunk %s (%s chunk #%d at offset %d): plaintext is %d bytes, index says %d"
                          % (d.hex(), name, i, off, len(plain), length))
                ok = False
                data = plain[:length].ljust(length, b"\0")
            else:
                data = plain
            sha.update(data)
            total += length
            if out is not None:
                out.write(data)
        return ok, sha.hexdigest(), total


def load_manifest(ck, snapdir):
    path = os.path.join(snapdir, "index.json.blob")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        ck.fail("index.json.blob: cannot read: %s" % (e.strerror or e))
        return None
    try:
        kind, plain = ck.decode_blob(raw)
    except ValueError as e:
        ck.fail("index.json.blob: %s" % e)
        return None
    if plain is None:
        ck.fail("index.json.blob: manifest must be an unencrypted blob, found %s" % kind)
        return None
    try:
        m = json.loads(plain.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        ck.fail("index.json.blob: not JSON: %s" % e)
        return None
    if not isinstance(m, dict):
        ck.fail("index.json.blob: JSON is not an object")
        return None
    good = True
    for key, typ in (("backup-type", str), ("backup-id", str), ("backup-time", int), ("files", list)):
        v = m.get(key)
        if not isinstance(v, typ) or isinstance(v, bool):
            ck.fail("index.json.blob: missing or mistyped key %r" % key)
            good = False
    if isinstance(m.get("backup-type"), str) and m["backup-type"] not in ("vm", "ct", "host"):
        ck.fail("index.json.blob: backup-type %r not vm/ct/host" % m["backup-type"])
        good = False
    if "unprotected" in m and not isinstance(m["unprotected"], dict):
        ck.fail("index.json.blob: unprotected is not an object")
        good = False
    if "signature" in m and not isinstance(m["signature"], str):
        ck.fail("index.json.blob: signature is not a string")
        good = False
    files = []
    for i, fi in enumerate(m.get("files") or []):
        if not isinstance(fi, dict):
            ck.fail("index.json.blob: files[%d] is not an object" % i)
            good = False
            continue
        bad = [k for k, t in (("filename", str), ("crypt-mode", str), ("size", int), ("csum", str))
               if not isinstance(fi.get(k), t) or isinstance(fi.get(k), bool)]
        if bad:
            ck.fail("index.json.blob: files[%d] missing or mistyped %s" % (i, ", ".join(bad)))
            good = False
            continue
        if fi["crypt-mode"] not in ("none", "encrypt", "sign-only"):
            ck.fail("index.json.blob: files[%d] crypt-mode %r unknown" % (i, fi["crypt-mode"]))
            good = False
        if not HEX64.match(fi["csum"]):
            ck.fail("index.json.blob: files[%d] csum is not 64 lower-case hex" % i)
            good = False
        fn = fi["filename"]
        if "/" in fn or fn.startswith(".") or not fn.endswith((".fidx", ".didx", ".blob")):
            ck.fail("index.json.blob: files[%d] filename %r not an index/blob name" % (i, fn))
            good = False
            continue
        files.append(fi)
    return m, files, good, kind


def check_snapshot_path(ck, snapdir, m):
    parts = os.path.normpath(os.path.abspath(snapdir)).split(os.sep)
    if len(parts) < 3:
        return
    btype, bid, btime = parts[-3:]
    if m.get("backup-type") != btype:
        ck.fail("index.json.blob: backup-type %r != directory %r" % (m.get("backup-type"), btype))
    if m.get("backup-id") != bid:
        ck.fail("index.json.blob: backup-id %r != directory %r" % (m.get("backup-id"), bid))
    mt = TIME_RE.match(btime)
    if not mt:
        ck.fail("snapshot directory name %r is not an RFC 3339 UTC time" % btime)
        return
    epoch = calendar.timegm(tuple(int(x) for x in mt.groups()) + (0, 0, 0))
    if m.get("backup-time") != epoch:
        ck.fail("index.json.blob: backup-time %r != directory time %s (%d)" % (m.get("backup-time"), btime, epoch))


# PBS namespaces (pbs-api-types BackupNamespace): each component is a PROXMOX_SAFE_ID, at
# most 7 levels, the name with its slashes at most 256 characters; on disk ns/<name>/...
SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MAX_NS_DEPTH = 7
# PBS Authid as written to a group's owner file: user@realm or user@realm!token, one line.
AUTH_ID = re.compile(r"^[^\s:/@!]+@[A-Za-z0-9_][A-Za-z0-9._-]*(![A-Za-z0-9_][A-Za-z0-9._-]*)?$")
# pbs-api-types PROXMOX_UPID_REGEX.
UPID_RE = re.compile(r"^UPID:[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:"
                     r"[0-9A-Fa-f]{8,16}:[0-9A-Fa-f]{8}:[^:\s]+:[^:\s]*:[^:\s]+:$")


def check_namespace(ck, store, snapdir):
    """The namespace of a snapshot directory from its path below STORE ('' = root), checked."""
    rel = os.path.relpath(os.path.abspath(snapdir), os.path.abspath(store)).split(os.sep)
    if len(rel) < 3 or rel[0] == "..":
        return None
    prefix = rel[:-3]
    if len(prefix) % 2 != 0 or any(prefix[i] != "ns" for i in range(0, len(prefix), 2)):
        ck.fail("snapshot path %s: the part before TYPE/ID/TIME is not ns/<name>/... pairs" % "/".join(rel))
        return None
    names = prefix[1::2]
    name = "/".join(names)
    if len(names) > MAX_NS_DEPTH:
        ck.fail("namespace %r is deeper than %d levels" % (name, MAX_NS_DEPTH))
    if len(name) > 256:
        ck.fail("namespace %r is longer than 256 characters" % name)
    for n in names:
        if not SAFE_ID.match(n):
            ck.fail("namespace component %r is not a PROXMOX_SAFE_ID" % n)
    return name


def check_group_owner(ck, snapdir):
    """PBS needs an owner file in every group: one line with a user or token id."""
    path = os.path.join(os.path.dirname(os.path.abspath(snapdir)), "owner")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        ck.fail("group has no owner file (%s)" % path)
        return None
    if not text.endswith("\n") or "\n" in text[:-1] or not AUTH_ID.match(text[:-1]):
        ck.fail("group owner file is not one line user@realm[!token]: %r" % text)
        return None
    return text[:-1]


def check_verify_state(ck, m):
    """unprotected.verify_state, when present, has PBS's SnapshotVerifyState shape."""
    vs = (m.get("unprotected") or {}).get("verify_state") if isinstance(m.get("unprotected"), dict) else None
    if vs is None:
        return None
    if not isinstance(vs, dict) or vs.get("state") not in ("ok", "failed") or not isinstance(vs.get("upid"), str) \
            or not UPID_RE.match(vs["upid"]):
        ck.fail("index.json.blob: unprotected.verify_state is not {state: ok|failed, upid: UPID}: %r" % (vs,))
        return None
    return vs


def main(argv=None):
    ap = argparse.ArgumentParser(description="Strictly check (and optionally restore) a PBS snapshot.")
    ap.add_argument("store")
    ap.add_argument("snapshot", help="[ns/<name>/...]<type>/<id>/<time> relative to STORE, or a snapshot directory")
    ap.add_argument("--archive", help="only this archive (e.g. drive-scsi0.img or drive-scsi0.img.fidx)")
    ap.add_argument("--out", help="write the reassembled image here (needs a single archive)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary; FAIL lines go to stderr")
    ap.add_argument("--enc-deflate-string", default=ENC_DEFLATE_STRING_DEFAULT,
                    help="string whose SHA-256[:8] is the encrypted DEFLATE blob magic")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    snapdir = os.path.join(args.store, args.snapshot)
    if not os.path.isdir(snapdir):
        snapdir = args.snapshot
    if not os.path.isdir(snapdir):
        print("error: snapshot directory not found: %s" % args.snapshot, file=sys.stderr)
        return 2
    ck = Checker(args.store, args.enc_deflate_string)
    summary = {"snapshot": args.snapshot, "archives": [], "ok": False}

    loaded = load_manifest(ck, snapdir)
    files = []
    if loaded:
        m, files, _good, mkind = loaded
        summary["manifest"] = {"backup-type": m.get("backup-type"), "backup-id": m.get("backup-id"),
                               "backup-time": m.get("backup-time"), "blob_kind": mkind,
                               "files": [f["filename"] for f in files]}
        check_snapshot_path(ck, snapdir, m)
        summary["namespace"] = check_namespace(ck, args.store, snapdir)
        summary["owner"] = check_group_owner(ck, snapdir)
        summary["verify_state"] = check_verify_state(ck, m)

    selected = files
    if args.archive:
        a = args.archive
        selected = [f for f in files if f["filename"] in (a, a + ".fidx", a + ".didx", a + ".img.fidx")]
        if loaded and not selected:
            ck.fail("archive %r not in manifest (has: %s)" % (a, ", ".join(f["filename"] for f in files)))
    if args.out and len(selected) > 1:
        print("error: --out needs exactly one archive; use --archive", file=sys.stderr)
        return 2

    out_f = None
    tmp_out = None
    if args.out and selected:
        tmp_out = args.out + ".partial"
        out_f = open(tmp_out, "wb")

    for fi in selected:
        name = fi["filename"]
        path = os.path.join(snapdir, name)
        entry = {"name": name, "crypt-mode": fi["crypt-mode"]}
        summary["archives"].append(entry)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            ck.fail("%s: listed in manifest but cannot be read: %s" % (name, e.strerror or e))
            entry["ok"] = False
            continue
        nfail = len(ck.failures)
        encrypted = fi["crypt-mode"] == "encrypt"
        if name.endswith(".blob"):
            real = hashlib.sha256(raw).hexdigest()
            if fi["size"] != len(raw):
                ck.fail("%s: manifest size %d != file length %d" % (name, fi["size"], len(raw)))
            if fi["csum"] != real:
                ck.fail("%s: manifest csum %s != SHA-256 of file %s" % (name, fi["csum"], real))
            try:
                kind, plain = ck.decode_blob(raw)
            except ValueError as e:
                ck.fail("%s: %s" % (name, e))
                kind, plain = None, None
            entry.update(index="blob", size=len(raw), chunks=0, blob_kinds={kind: 1} if kind else {})
            if kind and plain is None:
                ck.encrypted_seen = True
                entry["encrypted"] = "encrypted: not checked"
            elif plain is not None:
                entry["sha256"] = hashlib.sha256(plain).hexdigest()
                entry["plain_size"] = len(plain)
                if out_f:
                    out_f.write(plain)
            entry["ok"] = len(ck.failures) == nfail
            continue
        res = ck.read_fidx(name, raw, fi) if name.endswith(".fidx") else ck.read_didx(name, raw, fi)
        if res is None:
            entry["ok"] = False
            continue
        info, spans, _ok = res
        entry.update(info)
        kinds = {}
        aok, sha, total = ck.assemble(name, spans, out_f, encrypted, kinds)
        entry["chunks"] = len(spans)
        entry["unique_chunks"] = len(set(s[2] for s in spans))
        entry["blob_kinds"] = kinds
        enc_unchecked = encrypted and any(k.startswith("encrypted") for k in kinds)
        if enc_unchecked:
            entry["encrypted"] = "encrypted: not checked"
        entry["ok"] = len(ck.failures) == nfail and (aok or enc_unchecked)
        entry["sha256"] = sha if entry["ok"] and not enc_unchecked else None
        if total != entry.get("size"):
            ck.fail("%s: chunks cover %d bytes, index size is %s" % (name, total, entry.get("size")))
            entry["ok"] = False

    ok = not ck.failures
    if out_f:
        out_f.close()
        if ok and not ck.encrypted_seen:
            os.replace(tmp_out, args.out)
        else:
            os.unlink(tmp_out)
    summary["ok"] = ok and not ck.encrypted_seen
    summary["failures"] = ck.failures
    summary["seconds"] = round(time.monotonic() - t0, 3)

    if args.json:
        for f in ck.failures:
            print("FAIL " + f, file=sys.stderr)
        print(json.dumps(summary, indent=2))
    else:
        for f in ck.failures:
            print("FAIL " + f)
        for e in summary["archives"]:
            if e.get("encrypted"):
                print("%s: encrypted: not checked (%d chunks)" % (e["name"], e.get("chunks", 0)))
            elif e.get("ok"):
                print("OK %s size=%d sha256=%s chunks=%d kinds=%s" % (
                    e["name"], e.get("plain_size", e.get("size", 0)), e.get("sha256"), e.get("chunks", 0),
                    json.dumps(e.get("blob_kinds", {}), sort_keys=True)))
        if ok:
            print("OK" if not ck.encrypted_seen else "OK (encrypted content not checked)")
    if not ok:
        return 1
    return 3 if ck.encrypted_seen else 0


if __name__ == "__main__":
    sys.exit(main())
