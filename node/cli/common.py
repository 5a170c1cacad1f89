"""What the CLI's command modules share: global options, the passphrase, the node
home, the daemon's state, and checks on the paths a user names.

The command modules (admin, files, peers) import this module and output.py,
never each other; main.py imports them all. So the CLI's imports form no circle.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import re
import stat
import sys
from pathlib import Path

from ..cluster.engine import Engine
from ..errors import BackendPending, MosaicError, NotFoundError, StorageError, UsageError
from ..store.home import Home, default_home
from .output import Output, safe_text

PASS_ENV = "MOSAIC_PASSPHRASE"


# ---- global options ----------------------------------------------------------------------

def add_global_options(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--home, --json and -q/--quiet on `p`.

    On the top parser they have their defaults; on every command's parser they
    default to SUPPRESS, so a value given after the command word replaces the one
    given before it, and one not given there leaves it alone.
    """
    kw: dict = {} if top else {"default": argparse.SUPPRESS}
    g = p.add_argument_group("global options") if not top else p
    g.add_argument("--home", metavar="DIR",
                   help="node home (default: $MOSAIC_HOME or ~/.local/share/mosaic)", **kw)
    g.add_argument("--json", action="store_true", help="machine-readable output", **kw)
    g.add_argument("-q", "--quiet", action="store_true", help="no progress or messages", **kw)


def command_parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `p`: commands and their sub-commands (each once)."""
    found: dict[int, argparse.ArgumentParser] = {}
    todo = [p]
    while todo:
        for action in todo.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sp in action.choices.values():
                    if id(sp) not in found:
                        found[id(sp)] = sp
                        todo.append(sp)
    return list(found.values())


def positive_int(s: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return v


def nonneg_int(s: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


# ---- passphrase and node home ------------------------------------------------------------

def ask_passphrase(confirm: bool = False) -> str | None:
    """The passphrase from $MOSAIC_PASSPHRASE, or a terminal prompt; None if neither."""
    env = os.environ.get(PASS_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        return None
    p = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != p:
        raise UsageError("passphrases do not match")
    return p


def home_path(args: argparse.Namespace) -> Path:
    """The node home named by --home, or the default one."""
    return Path(args.home) if args.home else default_home()


def home_of(args: argparse.Namespace) -> Home:
    """The initialised node home named by --home (or the default); HomeError if none."""
    h = Home(home_path(args))
    h.require()
    return h


def open_node(args: argparse.Namespace) -> Engine:
    """Open the node named by --home, asking for the passphrase if the key is sealed."""
    from ..store import keys as keymod
    h = home_of(args)
    doc = keymod.read_key_file(h.key_path)
    pw = ask_passphrase() if keymod.is_sealed(doc) else None
    return Engine.open_home(h.root, passphrase=pw)


def daemon_alive(home: Home) -> bool:
    """True if the daemon recorded in HOME/daemon.json is still running."""
    try:
        doc = json.loads((home.root / "daemon.json").read_text())
        os.kill(int(doc["pid"]), 0)
        return True
    except (OSError, ValueError, KeyError):
        return False


def daemon_status(home: Home) -> dict:
    """Whether a daemon runs on this home, where it listens, and since when."""
    try:
        doc = json.loads((home.root / "daemon.json").read_text())
    except (OSError, ValueError):
        return {"running": False}
    doc["running"] = daemon_alive(home)
    return doc


# ---- paths the user names ----------------------------------------------------------------
# A file or folder named on the command line that is missing is "not found" (1); one of
# the wrong kind (a folder for a file, a socket, a file in the way of a folder) or one
# the user may not read or write is bad input (2); a read that fails is a storage
# error (5). Errors inside the node home keep their own codes.

_WRONG_KIND = {errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.ELOOP, errno.ENAMETOOLONG,
               errno.EEXIST, errno.EOPNOTSUPP}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def input_error(e: OSError, name: str | os.PathLike) -> MosaicError:
    """The Mosaic error for an OSError on opening or reading the user's input `name`."""
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFoundError(f"no such file: {name}")
    if e.errno == errno.EISDIR:
        return UsageError(f"{name} is a directory, not a file")
    if e.errno in (errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP):
        return UsageError(f"{name} is not a regular file (a socket or device)")
    if e.errno in _DENIED:
        return UsageError(f"permission denied: {name}")
    if e.errno in _WRONG_KIND:
        return UsageError(f"cannot open {name}: {e.strerror or e}")
    return StorageError(f"cannot read {name}: {e.strerror or e}")


def read_input(raw: str) -> bytes:
    """The bytes of the input file the user named (`-`: standard input)."""
    if raw == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(raw).read_bytes()
    except OSError as e:
        raise input_error(e, raw) from None


def check_input_file(raw: str | os.PathLike) -> Path:
    """`raw` names a readable file (a regular one, or a pipe or device to read)."""
    p = Path(raw)
    try:
        st = p.stat()
    except OSError as e:
        raise input_error(e, raw) from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{raw} is a directory, not a file")
    if stat.S_ISSOCK(st.st_mode):
        raise UsageError(f"{raw} is not a regular file (a socket)")
    if not os.access(p, os.R_OK):
        raise UsageError(f"permission denied: {raw}")
    return p


def _nearest_existing(p: Path) -> Path:
    for a in (p, *p.parents):
        if a.exists() or a.is_symlink():
            return a
    return Path(".")  # pragma: no cover - "/" always exists


def check_output_file(dest: Path) -> None:
    """`dest` can be created or replaced: it is not a folder, no file stands where a
    folder above it must be, and the nearest existing folder is writable."""
    if dest.is_dir():
        raise UsageError(f"{dest} is a directory")
    check_output_folder(dest.parent)


def check_output_folder(folder: Path) -> None:
    """`folder` is a folder, or can be made one, and can be written in: UsageError if
    a file stands in the way or the nearest existing folder is not writable."""
    a = _nearest_existing(folder)
    if not a.is_dir():
        raise UsageError(f"{a} exists and is not a folder")
    if not os.access(a, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write in {a} (permission denied or read-only)")


# ---- file names <-> names -----------------------------------------------------------------
# A POSIX file name is any bytes but NUL and "/"; a Mosaic name is UTF-8 text without control
# characters (protocol/name_rules.py). `path_name` maps the one to the other losslessly: every
# byte that is not part of valid, printable UTF-8 (an undecodable byte, a C0 or C1 control
# character, DEL) becomes the private-use character U+EF00 + byte, and so does every byte of a
# character that is itself in U+EF00-U+EFFF, so no file name is ever read back wrongly.
# `name_path` maps such characters back to their bytes (only U+EF01-U+EF1F and U+EF7F-U+EFFF:
# never "/", "." or NUL, so a name cannot make a path climb out of its folder).

_ESC = 0xEF00


def _escaped_byte(o: int) -> bool:
    return 0 < o < 0x20 or 0x7F <= o <= 0xFF


# Characters `path_name` must escape: undecodable bytes, C0/C1 controls, DEL, U+EF00-U+EFFF.
_NEEDS_ESCAPE = re.compile(f"[\x00-\x1f\x7f-\x9f\udc80-\udcff{chr(_ESC)}-{chr(_ESC + 0xFF)}]")


def path_name(path: str | bytes | os.PathLike) -> str:
    """The name text for a file system path (relative, `/`-separated), losslessly (above)."""
    text = path if isinstance(path, str) else os.fsencode(path).decode("utf-8", "surrogateescape")
    if not _NEEDS_ESCAPE.search(text):  # the common case, at C speed
        return text
    out: list[str] = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte, as surrogateescape gives it
            out.append(chr(_ESC + o - 0xDC00))
        elif o < 0x20 or 0x7F <= o <= 0x9F or _ESC <= o <= _ESC + 0xFF:
            out.extend(chr(_ESC + b) for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


_ESCAPED = re.compile(f"[{chr(_ESC)}-{chr(_ESC + 0xFF)}]")


def name_path(name: str) -> str:
    """The file system path (str, surrogateescape) for a name: `path_name` undone."""
    if not _ESCAPED.search(name):  # the common case, at C speed
        return name
    buf = bytearray()
    for ch in name:
        o = ord(ch) - _ESC
        if _escaped_byte(o):
            buf.append(o)
        else:
            buf += ch.encode("utf-8")
    return os.fsdecode(bytes(buf))


def shown_path(path: str | os.PathLike) -> str:
    """A path for messages and JSON (undecodable bytes shown as backslash escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# ---- where get writes ----------------------------------------------------------------------

def save_index_copy(node: Engine) -> str | None:
    """Append the change to the index copies on the backends; a warning line if that failed.

    The change stays journaled in the index, so the next command that saves sends it.
    """
    try:
        node.save_index_copy()
    except StorageError as e:
        return f"done locally; the backends' index copy is pending: {e}"
    return None


def finish(out: Output, doc: dict, warning: str | None, code: int = 0) -> int:
    """Print the result document; with a warning it says so and the exit code is 8
    ("done locally, backend pending") unless the command already failed."""
    if warning:
        sys.stderr.write(f"mosaic: warning: {safe_text(warning)}\n")
        out.doc({**doc, "warning": warning, "backend_pending": True})
        return code or BackendPending.exit_code
    out.doc(doc)
    return code


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def name_arg(raw: str) -> str:
    """A NAME argument as the name `put -r` records for the same bytes: an argument holding
    bytes that are not UTF-8 (a file name typed or completed by the shell) is mapped by
    `path_name`, so `get`, `rm` and `mv` find what `put -r` stored; any other text is taken
    as it is."""
    return path_name(raw) if _UNDECODABLE.search(raw) else raw
