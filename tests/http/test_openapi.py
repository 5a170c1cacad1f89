"""The OpenAPI 3.1 document is true to the implementation: a schemathesis run against the
live server finds no server error and no response outside the document.

Its coverage phase (every operation's boundary and negative cases, ~700 requests) always
runs whole; the fuzzing phase draws MOSAIC_SCHEMATHESIS_EXAMPLES cases per operation (10
in the suite; set it higher for a deeper run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import Server, env_for_children

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def test_openapi_document_is_3_1_and_covers_the_routes(server: Server) -> None:
    doc = httpx.get(server.url + "/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    paths = set(doc["paths"])
    for p in ("/v1/files/{hash}", "/v1/names/{path}", "/v1/move", "/v1/tree/{prefix}",
              "/v1/folders", "/v1/search", "/v1/stat/{ref}", "/v1/uploads/", "/v1/uploads/{id}",
              "/v1/status", "/v1/events", "/v1/warm", "/v1/pin", "/v1/export", "/v1/import",
              "/v1/session"):
        assert p in paths, p


def test_schemathesis_finds_no_server_error_or_undocumented_response(server: Server,
                                                                     tmp_path: Path) -> None:
    with server.client("admin") as c:  # something to find: files, folders
        for i in range(3):
            c.put(f"/v1/names/seed/f{i}.txt", content=f"seed {i}".encode())
        c.post("/v1/folders", json={"path": "seed/empty"})
    st = Path(sys.executable).with_name("schemathesis")
    env = env_for_children()
    env["SCHEMATHESIS_HOOKS"] = "tests.http.st_hooks"
    r = subprocess.run([str(st), "run", server.url + "/v1/openapi.json",
                        "-H", f"Authorization: Bearer {server.tokens['admin']}",
                        "--checks", CHECKS, "--exclude-path", "/v1/events",
                        "--max-examples", os.environ.get("MOSAIC_SCHEMATHESIS_EXAMPLES", "10"),
                        "--no-color"],
                       capture_output=True, text=True, env=env, timeout=600,
                       cwd=tmp_path)  # schemathesis keeps its state in ./.schemathesis
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "passed" in r.stdout
    log = server.log.read_text()
    assert "internal error" not in log and "Traceback" not in log, log[-4000:]
