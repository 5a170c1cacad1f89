"""Keep credentials out of messages and library logs.

Backends register every secret they hold; `scrub` removes them from any text,
and a logging filter on the chatty client-library loggers (botocore, urllib3,
httpx, httpcore) scrubs log records before any handler sees them.
"""

from __future__ import annotations

import base64
import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False

#: loggers that may print request headers or signing material at DEBUG level
_LOGGERS = (
    "botocore",
    "botocore.auth",
    "botocore.awsrequest",
    "botocore.client",
    "botocore.credentials",
    "botocore.endpoint",
    "botocore.hooks",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.regions",
    "botocore.retryhandler",
    "botocore.utils",
    "boto3",
    "urllib3",
    "urllib3.connectionpool",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
)

_MIN_LEN = 4  # never "redact" trivially short strings: it would mangle messages


def register_secret(*values: str | None) -> None:
    """Remember credential strings so `scrub` and the log filter remove them."""
    new = {v for v in values if v and len(v) >= _MIN_LEN}
    if not new:
        return
    with _lock:
        _secrets.update(new)
    _install_filter()


def register_basic_auth(username: str | None, password: str | None) -> None:
    """Register a password and the base64 `user:pass` an Authorization header carries."""
    if password:
        token = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
        register_secret(password, token)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    with _lock:
        found = [s for s in _secrets if s in text]
    for s in sorted(found, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


class _ScrubFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            msg = record.getMessage()
        except Exception:  # a broken record: leave it to logging to report
            return True
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


def _install_filter() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    flt = _ScrubFilter()
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(flt)
