"""A real node for the web UI: `mosaic serve --http` as a subprocess, tokens made with
`mosaic token add`, and headless Debian Chromium driven by Selenium (chromedriver).

Shared by the browser tests (tests/ui/) and tools/ui_screenshots.py. Everything listens
on 127.0.0.1; Chromium runs with a fresh profile and the flags that keep it off the
network (the machine has no internet, and Chromium would otherwise hang trying).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
WEAK_KDF_CLI = REPO / "tests" / "weak_kdf_cli.py"
HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--password-store=basic", "--use-mock-keychain")
READY_S = 30.0
WAIT_S = 30.0

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MOSAIC_DEBUG", None)
    env.pop("MOSAIC_KEY_FILE_PASSPHRASE", None)
    return env


def wait_for(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll until `pred` returns something truthy (bounded); AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Node:
    """One node home with a running `mosaic serve --http` daemon."""

    home: Path
    log_path: Path
    http_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def cli(self, *args: str | os.PathLike, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """`mosaic --home HOME ARGS` (with the tests' weak KDF); exit 0 required."""
        p = subprocess.run([sys.executable, str(WEAK_KDF_CLI), "--home", str(self.home),
                            *map(str, args)], input=input, capture_output=True, env=cli_env(),
                           cwd=REPO, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        assert p.returncode == 0, f"mosaic {args} -> {p.returncode}\n{p.stderr.decode()}"
        return p

    def init(self, *extra: str) -> None:
        self.cli("init", "--no-passphrase", *extra)

    def token(self, name: str, scope: str, prefix: str = "") -> str:
        """Make a token (`mosaic token add --json`) and remember it under `name`."""
        args = ["--json", "token", "add", name, "--scope", scope]
        if prefix:
            args += ["--prefix", prefix]
        tok = json.loads(self.cli(*args).stdout)["token"]
        self.tokens[name] = tok
        return tok

    def mint(self, specs: dict[str, tuple[str, str]]) -> None:
        """Make tokens (name -> (scope, prefix)) in this process through the TokenStore that
        `mosaic token add` uses: one index open instead of a CLI run per token. The daemon
        must not be running yet."""
        from mosaic.node.cluster.tokens import TokenStore
        from mosaic.node.store.index import Index
        index = Index(self.home / "index")
        try:
            store = TokenStore(index)
            for name, (scope, prefix) in specs.items():
                self.tokens[name] = store.add(name, scope, prefix)[0]
        finally:
            index.close()

    def start(self, ready_timeout: float = READY_S) -> None:
        """Start the daemon and wait (bounded) until the HTTP face answers."""
        logf = open(self.log_path, "ab")  # noqa: SIM115 - the daemon writes it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(WEAK_KDF_CLI), "--home", str(self.home), "serve",
             "--listen", f"{HOST}:{self.peer_port}", "--http", f"{HOST}:{self.http_port}"],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=cli_env(), cwd=REPO,
            start_new_session=True)
        logf.close()
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode}:\n{self.log()}")
            try:
                return httpx.get(self.url + "/signin", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, ready_timeout, "the daemon's HTTP face", 0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log()}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def log(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def api(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for the API with a bearer token (or none)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def start_node(root: Path, *init_args: str) -> Node:
    """A fresh node under `root` with an admin, a write, a read and a prefixed token; running."""
    node = Node(root / "home", root / "daemon.log")
    node.init(*init_args)
    node.mint({"admin": ("admin", ""), "writer": ("write", ""), "reader": ("read", ""),
               "projects": ("write", "projects")})
    node.start()
    return node


class Browser:
    """Headless Chromium with a fresh profile and a download folder."""

    def __init__(self, downloads: Path, width: int = 1280, height: int = 860):
        self.profile = Path(tempfile.mkdtemp(prefix="mosaic-chromium-"))
        self.downloads = downloads
        downloads.mkdir(parents=True, exist_ok=True)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in CHROME_FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.add_argument(f"--window-size={width},{height}")
        opts.add_experimental_option("prefs", {
            "download.default_directory": str(downloads), "download.prompt_for_download": False,
            "safebrowsing.enabled": False})
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver: WebDriver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(60)
        self.driver.set_script_timeout(60)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": str(downloads)})

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------
    def wait(self, pred: Callable[[WebDriver], T], timeout: float = WAIT_S, what: str = "") -> T:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            pred, message=what or "condition")

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str, timeout: float = WAIT_S) -> Any:
        return self.wait(lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css)
                                         if e.is_displayed()), None), timeout, f"{css} visible")

    def texts(self, css: str) -> str:
        """The text of every element matching `css`, one per line (read in one step, so a
        list the page re-renders meanwhile cannot go stale)."""
        return self.js("return [...document.querySelectorAll(arguments[0])]"
                       ".map(e => e.textContent).join('\\n')", css)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def dark(self, on: bool) -> None:
        """Emulate the system's colour preference."""
        self.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": "dark" if on else "light"}]})

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def sign_in(self, base: str, token: str, next_path: str = "/") -> None:
        """Sign in through the sign-in page and wait for the page it leads to."""
        d = self.driver
        d.get(f"{base}/signin?next={next_path}")
        box = self.visible("#token")
        box.clear()
        box.send_keys(token)
        self.find("#signin-submit").click()
        self.wait(lambda d: "/signin" not in d.current_url, what="leaving the sign-in page")

    def downloaded(self, name: str, timeout: float = WAIT_S) -> Path:
        """The finished download called `name` (waits for Chromium to complete it)."""
        path = self.downloads / name

        def done() -> Path | None:
            partial = list(self.downloads.glob("*.crdownload"))
            return path if path.exists() and not partial else None

        return wait_for(done, timeout, f"download {name}")


def b3(data: bytes) -> str:
    """What `b3sum` prints for these bytes."""
    import blake3
    return blake3.blake3(data).hexdigest()


def b3_file(path: Path) -> str:
    import blake3
    h = blake3.blake3()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def names_under(client: httpx.Client, folder: str) -> dict[str, str]:
    """path -> hash of every file under `folder`, through the API (recursive, paged)."""
    out: dict[str, str] = {}
    cursor = ""
    while True:
        params = {"recursive": "1", "limit": "1000", **({"cursor": cursor} if cursor else {})}
        r = client.get(f"/v1/tree/{folder}", params=params)
        assert r.status_code == 200, r.text
        doc = r.json()
        out.update({e["path"]: e["hash"] for e in doc["entries"]})
        cursor = doc.get("cursor") or ""
        if not cursor:
            return out


def make_tree(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write files (relative path -> bytes) under `root`; relative path -> their b3sum."""
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return {rel: b3(data) for rel, data in files.items()}
