"""A small tus 1.0.0 client run as its own process by the tests (stdlib only).

    python tus_client.py BASE_URL TOKEN FILE NAME STATE [--die-after BYTES] [--patch BYTES]

Creates an upload (its URL kept in STATE) or resumes the one in STATE from the offset
HEAD reports, then sends the rest in PATCH requests of --patch bytes, each streamed.
With --die-after it SIGKILLs itself once it has sent that many bytes (mid-request),
as a crashed client would. On completion it prints the Mosaic-Hash header.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

PIECE = 256 * 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    for a in ("base", "token", "file", "name", "state"):
        ap.add_argument(a)
    ap.add_argument("--die-after", type=int, default=None)
    ap.add_argument("--patch", type=int, default=96 << 20)
    args = ap.parse_args()
    u = urlsplit(args.base)
    auth = {"Authorization": f"Bearer {args.token}", "Tus-Resumable": "1.0.0"}
    size = os.path.getsize(args.file)
    state = Path(args.state)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    if state.exists():
        loc = state.read_text()
        conn.request("HEAD", loc, headers=auth)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            print(f"HEAD {r.status}", file=sys.stderr)
            return 1
        offset = int(r.getheader("Upload-Offset"))
    else:
        meta = "name " + base64.b64encode(args.name.encode()).decode()
        conn.request("POST", "/v1/uploads/", headers={**auth, "Upload-Length": str(size),
                                                       "Upload-Metadata": meta})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            print(f"POST {r.status}", file=sys.stderr)
            return 1
        loc = r.getheader("Location")
        state.write_text(loc)
        offset = 0
    sent = 0
    final = None
    with open(args.file, "rb") as f:
        while offset < size:
            n = min(args.patch, size - offset)
            conn.putrequest("PATCH", loc)
            for k, v in {**auth, "Upload-Offset": str(offset), "Content-Length": str(n),
                         "Content-Type": "application/offset+octet-stream"}.items():
                conn.putheader(k, v)
            conn.endheaders()
            f.seek(offset)
            left = n
            while left:
                piece = f.read(min(PIECE, left))
                conn.send(piece)
                left -= len(piece)
                sent += len(piece)
                if args.die_after is not None and sent >= args.die_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            r = conn.getresponse()
            r.read()
            if r.status != 204:
                print(f"PATCH {r.status}", file=sys.stderr)
                return 1
            offset = int(r.getheader("Upload-Offset"))
            final = r.getheader("Mosaic-Hash")
    print(final or "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
