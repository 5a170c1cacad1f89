"""What the HTTP tests check again and again: problem documents, multipart/byteranges
bodies, and requests written by hand on a raw socket."""

from __future__ import annotations

import re
import socket
import threading

import httpx

from .conftest import HOST

CSP = "default-src 'self'; script-src 'self'"


def problem(r: httpx.Response, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json")
    if r.request.method == "HEAD":
        assert r.content == b""
        return {}
    doc = r.json()
    assert doc["status"] == status and doc["type"].startswith("https://mosaic.invalid/problems/")
    assert "Traceback" not in r.text
    if kind:
        assert doc["type"].endswith("/" + kind), doc
    return doc


def multipart(body: bytes, ctype: str) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body."""
    boundary = re.search(r"boundary=(\S+)", ctype).group(1).encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: bytes (\S+)", head).group(1).decode()
        parts.append((cr, data[:-2] if data.endswith(b"\r\n") else data))
    return parts



def raw(port: int, request: bytes, close_after: bool = True) -> bytes:
    """What the server answers to `request` sent as raw bytes.

    The request is sent from a second thread while this one reads: a server that refuses a
    request before reading all of it (a 431) closes with bytes unread, and the reset that
    follows must not stop the answer, which arrived first, from being read.
    """
    with socket.create_connection((HOST, port), timeout=20) as s:
        def send() -> None:
            try:
                s.sendall(request)
                if close_after:
                    s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # refused and closed before it read everything
        sender = threading.Thread(target=send)
        sender.start()
        out = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                out += b
        except ConnectionResetError:
            pass
        sender.join()
        return out
