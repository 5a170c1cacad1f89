"""The OpenAPI 3.1 document of the REST API (served at /v1/openapi.json).

Written by hand next to the handlers it describes, and checked against the live
server by a schemathesis run in tests/http/test_openapi.py: every status code and
body a handler can answer is listed here.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from .auth import COOKIE
from .tus import EXTENSIONS, MAX_SIZE, TUS_VERSION

HASH = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "a file's BLAKE3 (hex)"}
J = "application/json"
PJ = "application/problem+json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, desc: str) -> dict:
    return {"description": desc, "content": {J: {"schema": schema}}}


def _problems(*codes: int) -> dict:
    """Problem responses for these codes, plus those any call may get (400 for a path with
    control characters, 401, 429, 431)."""
    out = {}
    for c in sorted({*codes, 400, 401, 429, 431}):
        out[str(c)] = {"$ref": f"#/components/responses/P{c}"}
    return out


_PROBLEM_TEXT = {
    400: "malformed input (hash, name, header, body)", 401: "missing or invalid credentials",
    403: "outside the token's scope or prefix, cross-site, or no CSRF token",
    404: "no such file, name, folder or upload", 408: "the body did not arrive in time",
    409: "conflict (wrong Upload-Offset, busy upload, a file or folder in the way)",
    412: "Tus-Resumable 1.0.0 is required", 413: "the body is too large",
    415: "wrong Content-Type", 416: "no satisfiable range",
    422: "a manifest dump that fails its MAC (changed after export)",
    429: "too many failed attempts from this address (see Retry-After)",
    431: "the request's header section is too large",
}


def _param(name: str, where: str, schema: dict, required: bool = False, desc: str = "") -> dict:
    p = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if desc:
        p["description"] = desc
    return p


def _content_op(summary: str, path_param: dict, cache: str) -> dict:
    """GET of a stored file's bytes (files and names)."""
    hdr = {"ETag": {"schema": {"type": "string"}, "description": '"<hash>"'},
           "Accept-Ranges": {"schema": {"type": "string"}}}
    return {
        "summary": summary,
        "parameters": [
            path_param,
            _param("Range", "header", {"type": "string"}, desc="bytes=a-b[,c-d...] (up to 100)"),
            _param("If-None-Match", "header", {"type": "string"}),
            _param("If-Range", "header", {"type": "string"}),
        ],
        "responses": {
            "200": {"description": f"the whole file ({cache})", "headers": hdr,
                    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                          "format": "binary"}}}},
            "206": {"description": "one range, or several as multipart/byteranges", "headers": hdr,
                    "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                          "format": "binary"}},
                                "multipart/byteranges": {"schema": {"type": "string",
                                                                    "format": "binary"}}}},
            "304": {"description": "If-None-Match matched the ETag"},
            **_problems(400, 403, 404, 416),
        },
    }


def _json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {J: {"schema": schema}}}


_TUS_HDR = _param("Tus-Resumable", "header", {"type": "string", "enum": [TUS_VERSION]},
                  required=True)
_UPLOAD_ID = _param("id", "path", {"type": "string", "pattern": "^[A-Za-z0-9_-]{22,64}$"})
_TUS_OUT = {"Tus-Resumable": {"schema": {"type": "string"}},
            "Upload-Offset": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
            "Upload-Expires": {"schema": {"type": "string"}},
            "Mosaic-Hash": {"schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            "description": "the file's hash, once complete"}}

REFS = {"type": "object", "required": ["refs"], "additionalProperties": True,
        "properties": {"refs": {"type": ["array", "null"], "minItems": 1, "maxItems": 10000,
                                "items": {"type": "string", "minLength": 1}}}}

SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "instance": {"type": "string"},
                               "exit_code": {"type": "integer",
                                             "description": "the CLI's exit code for this kind"}}},
    "Copies": {"type": "object", "required": ["backends", "nodes"],
               "properties": {"backends": {"type": "array", "items": {"type": "string"}},
                              "nodes": {"type": "array", "items": {"type": "string"}}}},
    "Entry": {"type": "object", "required": ["name", "path", "type"],
              "properties": {
                  "name": {"type": "string"}, "path": {"type": "string"},
                  "type": {"enum": ["file", "folder"]}, "hash": {"type": "string"},
                  "size": {"type": "integer"}, "created": {"type": "number"},
                  "cached": {"type": "number", "minimum": 0, "maximum": 1},
                  "saved": {"type": "integer", "minimum": 0},
                  "copies": _ref("Copies")}},
    "Listing": {"type": "object", "required": ["folder", "entries", "cursor"],
                "properties": {"folder": {"type": "string"},
                               "entries": {"type": "array", "items": _ref("Entry")},
                               "cursor": {"type": ["string", "null"]}}},
    "SearchResult": {"type": "object", "required": ["q", "entries", "cursor"],
                     "properties": {"q": {"type": "string"},
                                    "entries": {"type": "array", "items": _ref("Entry")},
                                    "cursor": {"type": ["string", "null"]}}},
    "PutResult": {"type": "object", "required": ["hash", "size", "new", "name", "new_bytes"],
                  "properties": {"hash": {"type": "string"}, "size": {"type": "integer"},
                                 "new": {"type": "boolean"}, "name": {"type": "string"},
                                 "new_bytes": {"type": "integer"}}},
    "Stat": {"type": "object", "required": ["hash", "names", "size", "chunks", "stored_bytes",
                                            "cached_fraction", "locations", "pinned", "nodes"],
             "properties": {"hash": {"type": "string"},
                            "names": {"type": "array", "items": {"type": "string"}},
                            "size": {"type": "integer"}, "created_ns": {"type": "integer"},
                            "chunks": {"type": "integer"}, "distinct_chunks": {"type": "integer"},
                            "stored_bytes": {"type": "integer"},
                            "dedup_saving_bytes": {"type": "integer"},
                            "compression_ratio": {"type": "number"},
                            "cached_fraction": {"type": "number"},
                            "locations": {"type": "object",
                                          "additionalProperties": {"type": "number"}},
                            "pinned": {"type": "boolean"},
                            "nodes": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
    "Status": {"type": "object",
               "required": ["node", "backends", "upload_queue", "peers", "repairs_queued"],
               "properties": {
                   "node": {"type": "object"},
                   "backends": {"type": "array", "items": {
                       "type": "object", "required": ["name", "kind", "used", "quota", "health"],
                       "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                      "used": {"type": "integer"},
                                      "quota": {"type": ["integer", "null"]},
                                      "health": {"enum": ["ok", "degraded"]},
                                      "pending_packs": {"type": "integer"},
                                      "pending_bytes": {"type": "integer"}}}},
                   "upload_queue": {"type": "object"}, "transfers": {"type": "array"},
                   "http_uploads": {"type": "integer"},
                   "peers": {"type": "array", "items": {"type": "object"}},
                   "repairs_queued": {"type": "integer"},
                   "recent_errors": {"type": "array"}}},
    "Session": {"type": "object", "required": ["name", "scope", "prefix", "csrf"],
                "properties": {"name": {"type": "string"},
                               "scope": {"enum": ["read", "write", "admin"]},
                               "prefix": {"type": "string"}, "csrf": {"type": "string"}}},
}


def _paths() -> dict:
    name_p = _param("path", "path", {"type": "string", "minLength": 1},
                    desc="a name, '/'-separated (percent-encode reserved characters)")
    ref_p = _param("ref", "path", {"type": "string", "minLength": 1}, desc="a hash or a name")
    page = [_param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
            _param("cursor", "query", {"type": "string"}, desc="from the previous page")]
    tree_params = [*page, _param("recursive", "query", {"enum": ["0", "1", "true", "false"]})]
    tree_op = {"summary": "one folder level (or every file below it), a page at a time",
               "parameters": tree_params,
               "responses": {"200": _json(_ref("Listing"), "a page"), **_problems(400, 403, 404)}}
    obj = {"type": "object"}
    return {
        "/v1/openapi.json": {"get": {"summary": "this document", "security": [],
                                     "responses": {"200": _json(obj, "OpenAPI 3.1")}}},
        "/v1/files/{hash}": {
            "get": _content_op("a file's bytes by hash (immutable)",
                               _param("hash", "path", HASH), "immutable")},
        "/v1/names/{path}": {
            "get": _content_op("a named file's bytes", name_p, "revalidated"),
            "put": {"summary": "store the body under the name (streamed)",
                    "parameters": [name_p],
                    "requestBody": {"required": True, "content": {"application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}}}},
                    "responses": {"200": _json(_ref("PutResult"), "the content was stored already"),
                                  "201": _json(_ref("PutResult"), "new content"),
                                  **_problems(400, 403, 408, 409)}},
            "delete": {"summary": "remove a name (or an empty folder)", "parameters": [name_p],
                       "responses": {"204": {"description": "removed"},
                                     **_problems(400, 403, 404, 409)}}},
        "/v1/move": {"post": {
            "summary": "rename a file or a folder",
            "requestBody": _json_body({"type": "object", "required": ["from", "to"],
                                       "properties": {"from": {"type": "string"},
                                                      "to": {"type": "string"}}}),
            "responses": {"200": _json({"type": "object", "required": ["from", "to", "moved"],
                                        "properties": {"from": {"type": "string"},
                                                       "to": {"type": "string"},
                                                       "moved": {"type": "integer"}}}, "moved"),
                          **_problems(400, 403, 404, 408, 409, 413, 415)}}},
        "/v1/folders": {"post": {
            "summary": "make an empty folder",
            "requestBody": _json_body({"type": "object", "required": ["path"],
                                       "properties": {"path": {"type": "string"}}}),
            "responses": {"200": _json(obj, "existed already"), "201": _json(obj, "made"),
                          **_problems(400, 403, 408, 409, 413, 415)}}},
        "/v1/tree": {"get": tree_op},
        "/v1/tree/{prefix}": {"get": {**tree_op, "parameters": [
            _param("prefix", "path", {"type": "string", "minLength": 1}), *tree_params]}},
        "/v1/search": {"get": {
            "summary": "names by substring, or by glob when q has * ? [",
            "parameters": [_param("q", "query", {"type": "string", "minLength": 1,
                                                 "maxLength": 1024}, required=True), *page],
            "responses": {"200": _json(_ref("SearchResult"), "matches"), **_problems(400, 403)}}},
        "/v1/stat/{ref}": {"get": {
            "summary": "what `mosaic stat` shows, with pin and node copies", "parameters": [ref_p],
            "responses": {"200": _json(_ref("Stat"), "the file"), **_problems(400, 403, 404)}}},
        "/v1/uploads/": {
            "options": {"summary": "tus capabilities", "security": [],
                        "responses": {"204": {"description": "capabilities", "headers": {
                            "Tus-Version": {"schema": {"type": "string"}},
                            "Tus-Extension": {"schema": {"type": "string"}},
                            "Tus-Max-Size": {"schema": {"type": "string"}}}}}},
            "post": {"summary": "create an upload (tus creation, creation-with-upload)",
                     "parameters": [
                         _TUS_HDR,
                         _param("Upload-Length", "header",
                                {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                                required=True),
                         _param("Upload-Metadata", "header", {"type": "string"},
                                desc="`name <base64 of the name>`")],
                     "requestBody": {"required": False, "content": {OFFSET: {
                         "schema": {"type": "string", "format": "binary"}}}},
                     "responses": {"201": {"description": "created", "headers": {
                         **_TUS_OUT, "Location": {"schema": {"type": "string"}}}},
                         **_problems(400, 403, 408, 409, 412, 413, 415)}}},
        "/v1/uploads/{id}": {
            "head": {"summary": "the upload's durable offset", "parameters": [_UPLOAD_ID, _TUS_HDR],
                     "responses": {"200": {"description": "state", "headers": _TUS_OUT},
                                   **_problems(403, 404, 412)}},
            "patch": {"summary": "append at Upload-Offset",
                      "parameters": [_UPLOAD_ID, _TUS_HDR,
                                     _param("Upload-Offset", "header",
                                            {"type": "integer", "minimum": 0}, required=True)],
                      "requestBody": {"required": True, "content": {OFFSET: {
                          "schema": {"type": "string", "format": "binary"}}}},
                      "responses": {"204": {"description": "appended", "headers": _TUS_OUT},
                                    **_problems(400, 403, 404, 408, 409, 412, 413, 415)}},
            "delete": {"summary": "terminate the upload", "parameters": [_UPLOAD_ID, _TUS_HDR],
                       "responses": {"204": {"description": "terminated"},
                                     **_problems(403, 404, 412)}}},
        "/v1/status": {"get": {"summary": "node, backends, upload queue, peers, repairs",
                               "responses": {"200": _json(_ref("Status"), "status"),
                                             **_problems()}}},
        "/v1/events": {"get": {
            "summary": "Server-Sent Events (put, rm, mv, mkdir, upload, peer, changed, error)",
            "parameters": [_param("Last-Event-ID", "header", {"type": "string"})],
            "responses": {"200": {"description": "an endless event stream", "content": {
                "text/event-stream": {"schema": {"type": "string"}}}}, **_problems()}}},
        "/v1/warm": {"post": {
            "summary": "make files' chunks local (all files if refs is null)",
            "requestBody": _json_body(REFS),
            "responses": {"200": _json(obj, "what was fetched"),
                          **_problems(400, 403, 404, 408, 413, 415)}}},
        "/v1/pin": {"post": {
            "summary": "keep full local copies", "requestBody": _json_body(REFS),
            "responses": {"200": _json(obj, "pinned"), **_problems(400, 403, 404, 408, 413, 415)}}},
        "/v1/export": {"post": {
            "summary": "the manifest dump (admin)", "requestBody": _json_body(REFS),
            "responses": {"200": _json(obj, "the dump"),
                          **_problems(400, 403, 404, 408, 413, 415)}}},
        "/v1/import": {"post": {
            "summary": "load a manifest dump, all or nothing (admin)",
            "requestBody": _json_body(obj),
            "responses": {"200": _json(obj, "counts"),
                          **_problems(400, 403, 408, 413, 415, 422)}}},
        "/v1/session": {
            "post": {"summary": "sign in a browser: sets the mosaic_session cookie", "security": [],
                     "requestBody": _json_body({"type": "object", "required": ["token"],
                                                "properties": {"token": {"type": "string"}}}),
                     "responses": {"201": _json(_ref("Session"), "signed in"),
                                   **_problems(400, 403, 408, 413, 415)}},
            "get": {"summary": "who is signed in",
                    "responses": {"200": _json(_ref("Session"), "the session"), **_problems(403)}},
            "delete": {"summary": "sign out",
                       "responses": {"204": {"description": "signed out"}, **_problems(403)}}},
    }


OFFSET = "application/offset+octet-stream"


@functools.cache
def _document() -> dict:
    responses = {f"P{c}": {"description": t, "content": {PJ: {"schema": _ref("Problem")}}}
                 for c, t in _PROBLEM_TEXT.items()}
    for c in (401, 429):
        responses[f"P{c}"]["headers"] = {
            "WWW-Authenticate" if c == 401 else "Retry-After": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mosaic HTTP API", "version": "1.0.0",
                 "description": "Content-addressed, deduplicating, encrypted storage node. "
                                f"Resumable uploads: tus {TUS_VERSION} ({EXTENSIONS}). "
                                "Errors are RFC 9457 problem documents."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": responses,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `mosaic token add`"},
                "session": {"type": "apiKey", "in": "cookie", "name": COOKIE,
                            "description": "from POST /v1/session; state changes also need "
                                           "X-CSRF-Token"}}},
    }


def document() -> dict:
    """The OpenAPI document (a fresh copy)."""
    return copy.deepcopy(_document())
