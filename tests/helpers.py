"""Small helpers shared by several test modules (not tests themselves)."""

import io
import json
import zipfile


def asan_loaded() -> bool:
    """True when AddressSanitizer's runtime is in this process (tools/sanitize.sh)."""
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def rewrite(data: bytes, header=None, members=None, compression=zipfile.ZIP_STORED,
            drop=()) -> bytes:
    """Copy a model archive (bytes), editing its parsed header and/or members' bytes:
    ``header(dict) -> dict | bytes``, ``members[name](bytes) -> bytes``; members in
    ``drop`` are left out."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, \
            zipfile.ZipFile(out, "w", compression=compression) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            b = zin.read(info.filename)
            if info.filename == "header.json" and header is not None:
                h = header(json.loads(b))
                b = h if isinstance(h, bytes) else json.dumps(h).encode()
            if members and info.filename in members:
                b = members[info.filename](b)
            zout.writestr(info.filename, b)
    return out.getvalue()
