"""CLI verbs on files: put, get, cat, ls, stat, exists, rm, mv, check, verify, export, import,
warm."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import TypeVar

from ..cluster.engine import Engine
from ..errors import BackendPending, MosaicError, NotFoundError, UsageError
from ..store.home import check_name
from ..store.outfile import output_target, writing_into
from ..units import format_size
from .common import (
    check_output_file,
    check_output_folder,
    finish,
    input_error,
    name_arg,
    name_path,
    nonneg_int,
    open_node,
    path_name,
    positive_int,
    save_index_copy,
    shown_path,
)
from .output import Output, safe_text

T = TypeVar("T")

Skipped = list[dict[str, str]]  # {"path", "reason"} of each input a put left out


def _walk(root: Path, skipped: Skipped, unreadable: list[str]) -> list[tuple[Path, str]]:
    """The regular files under `root` with their paths relative to it, folder by folder in
    name order. What is not stored goes to `skipped` (symlinks, FIFOs, sockets, devices);
    a folder that cannot be read goes there too, and to `unreadable`."""
    out: list[tuple[Path, str]] = []
    todo: list[tuple[Path, str]] = [(root, "")]
    while todo:
        folder, rel = todo.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            reason = f"cannot read folder: {e.strerror or e}"
            skipped.append({"path": shown_path(folder), "reason": reason})
            unreadable.append(f"skipped ({reason}): {shown_path(folder)}")
            continue
        folders = []
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    folders.append((Path(e.path), r))
                    continue
                if e.is_file(follow_symlinks=False):
                    out.append((Path(e.path), r))
                    continue
            except OSError as err:  # pragma: no cover - lstat of a listed entry failed
                reason = f"cannot read: {err.strerror or err}"
                skipped.append({"path": shown_path(e.path), "reason": reason})
                unreadable.append(f"skipped ({reason}): {shown_path(e.path)}")
                continue
            skipped.append({"path": shown_path(e.path),
                            "reason": "not a regular file" + (" (symlink)" if e.is_symlink() else "")})
        todo.extend(reversed(folders))
    return out


def tree_base(raw: str, name: str | None) -> str | None:
    """The top folder `put -r raw` records: --name, else the folder's last path component
    (as `cp -r` and `tar`); None (its contents at the top) for `DIR/`, `.` or `..` (as rsync)."""
    if name:
        return check_name(name)
    last = raw.rsplit("/", 1)[-1]
    return None if last in ("", ".", "..") else check_name(path_name(last))


def cmd_put(args: argparse.Namespace, out: Output) -> int:
    """mosaic put PATH... [-r] [--name NAME]"""
    if args.name and len(args.paths) > 1:
        raise UsageError("--name needs exactly one PATH")
    jobs: list[tuple[str | Path, str | None]] = []
    warn: list[str] = []
    skipped: Skipped = []
    unreadable: list[str] = []
    failed: list[MosaicError] = []
    for raw in args.paths:
        if raw == "-":
            jobs.append(("-", check_name(args.name) if args.name else None))
            continue
        p = Path(raw)
        if p.is_dir():
            if not args.recursive:
                raise UsageError(f"{shown_path(raw)} is a directory (use -r)")
            base = tree_base(raw, args.name)
            for f, rel in _walk(p, skipped, unreadable):
                try:
                    name = check_name(f"{base}/{path_name(rel)}" if base else path_name(rel))
                except UsageError as e:  # a name too long: the others go on
                    failed.append(e)
                    warn.append(f"skipped {shown_path(f)}: {e}")
                    skipped.append({"path": shown_path(f), "reason": str(e)})
                    continue
                jobs.append((f, name))
        elif p.exists():
            if stat.S_ISSOCK(p.stat().st_mode):
                raise UsageError(f"{shown_path(raw)} is not a regular file (a socket)")
            jobs.append((p, check_name(args.name) if args.name else check_name(path_name(raw))))
        else:
            raise NotFoundError(f"no such file: {shown_path(raw)}")
    warn += [f"skipped (not a regular file): {s['path']}" for s in skipped
             if s["reason"].startswith("not a regular file")]
    warn += unreadable
    total = sum(j[0].stat().st_size for j in jobs if isinstance(j[0], Path))
    with open_node(args) as node:
        if args.parallel:
            from dataclasses import replace
            node.store.config = replace(node.config, upload_parallel=args.parallel)
        with node.index.read() as txn:  # what each name pointed at before: "replaced NAME"
            before = node.index.resolve_names(txn, [n for _, n in jobs if n])
        pending: BackendPending | None = None
        try:
            with out.progress(total or None, "put") as bar, \
                    node.ingest(bar, wait=not args.no_wait) as s:
                for src, name in jobs:
                    try:
                        s.put_source(sys.stdin.buffer if src == "-" else src, name)
                    except (NotFoundError, UsageError) as e:
                        failed.append(e)
                        warn.append(str(e))
                        skipped.append({"path": shown_path(src), "reason": str(e)})
                    except OSError as e:  # opening this input failed: the others go on
                        if e.filename is None or os.fsdecode(e.filename) != str(src):
                            raise
                        err = input_error(e, shown_path(src))
                        failed.append(err)
                        warn.append(str(err))
                        skipped.append({"path": shown_path(src), "reason": str(err)})
            rows = s.results
        except BackendPending as e:  # stored and durable here; a backend step is pending
            pending, rows = e, e.results
    replaced = []
    for r in rows:  # in order: a name given twice in one put replaces its first file too
        name = r.names[0] if r.names else None
        old = before.get(name) if name else None
        replaced.append(old is not None and old != r.file_id)
        if name:
            before[name] = r.file_id
    for w in warn:  # paths of the input tree: escaped, as names are (safe_text)
        sys.stderr.write(f"mosaic: warning: {safe_text(w)}\n")
    for r, rep in zip(rows, replaced, strict=True):
        out.line(f"{r.hash}  {r.names[0] if r.names else '-'}")
        if rep:
            out.info(f"replaced {r.names[0]}")
    doc = {"files": [{"hash": r.hash, "name": r.names[0] if r.names else None, "size": r.size,
                      "chunks": r.chunks, "new_chunks": r.new_chunks, "new_bytes": r.new_bytes,
                      "replaced": rep}
                     for r, rep in zip(rows, replaced, strict=True)],
           "size": sum(r.size for r in rows), "new_bytes": sum(r.new_bytes for r in rows),
           "errors": [str(e) for e in failed], "skipped": skipped}
    code = failed[0].exit_code if failed else (UsageError.exit_code if unreadable else 0)
    return finish(out, doc, str(pending) if pending else None, code)


def cmd_get(args: argparse.Namespace, out: Output) -> int:
    """mosaic get REF [DEST|-] [--offset N --length M] | get -r PREFIX DESTDIR"""
    with open_node(args) as node:
        node.cloud.explain_read_failures = True  # one line naming the backend and why
        if args.recursive:
            return _get_tree(node, args, out)
        m = node.resolve(args.ref)
        if args.dest in (None, "-"):
            node.get(m.file_id.hex(), sys.stdout.buffer, args.offset or 0, args.length)
            sys.stdout.buffer.flush()
            return 0
        dest = Path(args.dest)
        if args.dest.endswith("/") or dest.is_dir():  # DIR/: DIR/basename, as cp does
            names = node.index.names_of(m.file_id)
            base = Path(check_name(args.ref)).name if not _is_hash(args.ref) else (
                Path(names[0]).name if names else m.file_id.hex())
            dest = dest / name_path(base)
        kind, target = output_target(dest)
        size = max(0, m.size - (args.offset or 0))
        with out.progress(size if args.length is None else min(size, args.length), "get") as bar:
            if kind == "into":
                with writing_into(target) as f:
                    n = node.get(m.file_id.hex(), f, args.offset or 0, args.length, bar)
            else:
                check_output_file(target)
                n = node.get(m.file_id.hex(), target, args.offset or 0, args.length, bar)
        out.doc({"hash": m.file_id.hex(), "dest": shown_path(dest), "bytes": n})
    return 0


def _get_tree(node: Engine, args: argparse.Namespace, out: Output) -> int:
    """get -r PREFIX DESTDIR: every name under PREFIX ("" for all) into DESTDIR."""
    if not args.dest or args.dest == "-":
        raise UsageError("get -r needs a destination folder")
    if args.ref.strip("/") in ("", "."):  # the empty prefix: every name
        prefix, entries = "", node.manifests_under("")
    else:
        prefix = check_name(args.ref)
        entries = node.manifests_under(prefix, folder=True)
    if not entries:
        raise NotFoundError(f"no names under {args.ref}")
    dest = Path(args.dest)
    check_output_folder(dest)
    plan = _plan_tree(dest, [(m, name_path(name[len(prefix):].lstrip("/")
                                           or name.rsplit("/", 1)[-1])) for name, m in entries])
    size = sum(m.size for _, m in entries)
    with out.progress(size, "get") as bar:
        node.get_many([(m, t) for m, kind, t in plan if kind == "replace"], bar)
        for m, kind, t in plan:
            if kind == "into":
                with writing_into(Path(t)) as f:
                    node.get(m.file_id.hex(), f, progress=bar)
    out.doc({"files": len(entries), "bytes": size})
    return 0


def _plan_tree(dest: Path, items: list[tuple[T, str]]) -> list[tuple[T, str, str]]:
    """(item, how, path) for each (item, relative path) a tree restore writes, checked
    before anything is written: no path leads out of `dest` through a symlink already
    inside it, and no two files land on the same file (UsageError naming the path)."""
    root = os.path.realpath(dest)
    # each folder resolved once, from its parent's real path: one lstat, none below a folder
    # the restore makes (realpath would lstat every component of every folder)
    real_dirs: dict[str, tuple[str, bool]] = {"": (root, os.path.isdir(root))}
    seen: dict[str, str] = {}  # real path -> the relative path that writes it
    plan = []
    for h, rel in items:
        parent, leaf = os.path.split(rel)
        real_parent, parent_exists = _real_folder(real_dirs, parent)
        real = os.path.join(real_parent, leaf)
        if not parent_exists and real_parent.startswith(root + os.sep):
            # a folder the restore makes, inside DESTDIR: nothing in it can be in the way
            if real in seen:
                raise UsageError(f"{shown_path(dest / seen[real])} and {shown_path(dest / rel)} "
                                 "are the same file (nothing was written)")
            seen[real] = rel
            plan.append((h, "replace", real))
            continue
        p = dest / rel
        if os.path.islink(real):
            real = os.path.realpath(real)
        if os.path.commonpath([root, real]) != root:
            link = next((q for q in (dest / Path(*Path(rel).parts[:i + 1])
                                     for i in range(len(Path(rel).parts))) if q.is_symlink()), p)
            raise UsageError(f"{shown_path(link)} is a symlink leading out of {shown_path(dest)}"
                             " (nothing was written)")
        if real in seen:
            raise UsageError(f"{shown_path(dest / seen[real])} and {shown_path(p)} are the same "
                             "file through a symlink (nothing was written)")
        seen[real] = rel
        kind, target = output_target(p)
        plan.append((h, kind, str(target) if kind == "into" else real))
    return plan


def _real_folder(known: dict[str, tuple[str, bool]], rel: str) -> tuple[str, bool]:
    """(real path, exists as a folder) of the folder `rel` under the restore's root (""),
    as os.path.realpath and isdir would say, resolved from its parent's and kept in `known`."""
    got = known.get(rel)
    if got is not None:
        return got
    up, name = os.path.split(rel)
    base, base_exists = _real_folder(known, up)
    path = os.path.join(base, name)
    if not base_exists:  # inside a folder that is not there yet: nothing to resolve
        got = (path, False)
    else:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            got = (path, False)
        except OSError:  # let realpath and isdir say what they can
            real = os.path.realpath(path)
            got = (real, os.path.isdir(real))
        else:
            if stat.S_ISLNK(mode):
                real = os.path.realpath(path)
                got = (real, os.path.isdir(real))
            else:
                got = (path, stat.S_ISDIR(mode))
    known[rel] = got
    return got


def _is_hash(ref: str) -> bool:
    from ..units import is_hash
    return is_hash(ref.lower())


def cmd_cat(args: argparse.Namespace, out: Output) -> int:
    """mosaic cat REF"""
    args.dest, args.offset, args.length, args.recursive = "-", 0, None, False
    return cmd_get(args, out)


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    """mosaic ls [PREFIX]"""
    with open_node(args) as node:
        entries = node.ls(args.prefix or "")
    for e in entries:
        out.line(f"{e.file_id.hex()}  {e.size:>12}  {e.name}")
    out.doc([{"name": e.name, "hash": e.file_id.hex(), "size": e.size} for e in entries])
    return 0


def cmd_stat(args: argparse.Namespace, out: Output) -> int:
    """mosaic stat REF"""
    from ..store.verify import file_stat
    with open_node(args) as node:
        st = file_stat(node.store, node.resolve(args.ref).file_id)
    out.doc(st)
    out.line(f"hash:            {st['hash']}")
    out.line(f"names:           {', '.join(st['names']) or '-'}")
    out.line(f"size:            {st['size']} ({format_size(st['size'])})")
    out.line(f"chunks:          {st['chunks']} ({st['distinct_chunks']} distinct)")
    out.line(f"stored bytes:    {st['stored_bytes']} ({format_size(st['stored_bytes'])}, "
             f"compression {st['compression_ratio']:.2f}x)")
    out.line(f"dedup saving:    {st['dedup_saving_bytes']} bytes (shared with other files: "
             f"{st['shared_bytes']}, repeated in file: {st['repeated_bytes_in_file']})")
    out.line(f"cached fraction: {st['cached_fraction']:.1%}")
    out.line("locations:       " + ", ".join(f"{k} {v:.0%}" for k, v in st["locations"].items()))
    return 0


def cmd_exists(args: argparse.Namespace, out: Output) -> int:
    """mosaic exists HASH: exit 0 if present, 1 if not."""
    with open_node(args) as node:
        ok = node.exists(args.hash)
    out.line("present" if ok else "absent")
    out.doc({"hash": args.hash.lower(), "exists": ok})
    return 0 if ok else 1


def cmd_rm(args: argparse.Namespace, out: Output) -> int:
    """mosaic rm NAME|HASH..."""
    removed = []
    with open_node(args) as node:
        for ref in args.refs:
            removed += node.rm(ref)
        warning = save_index_copy(node)
    for r in removed:
        out.line(f"removed {r}")
    return finish(out, {"removed": removed}, warning)


def cmd_mv(args: argparse.Namespace, out: Output) -> int:
    """mosaic mv OLD NEW"""
    with open_node(args) as node:
        node.mv(args.old, args.new)
        warning = save_index_copy(node)
    return finish(out, {"old": check_name(args.old), "new": check_name(args.new)}, warning)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the file verbs to the parser."""
    p = sub.add_parser("put", help="store files; prints HASH  NAME per file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders with -r, or - for stdin")
    p.add_argument("-r", "--recursive", action="store_true", help="store folders recursively")
    p.add_argument("--name", type=name_arg, help="the name to record (with -r: the folder's name)")
    p.add_argument("--no-wait", action="store_true",
                   help="return once stored locally; uploads stay queued (`mosaic upload`)")
    p.add_argument("--parallel", type=positive_int, metavar="N",
                   help="parallel uploads (default 8)")
    p.set_defaults(func=cmd_put)
    p = sub.add_parser("get", help="write a file's exact bytes to DEST or stdout")
    p.add_argument("ref", metavar="HASH|NAME", type=name_arg)
    p.add_argument("dest", nargs="?", metavar="DEST|-")
    p.add_argument("-r", "--recursive", action="store_true", help='restore every name under a prefix ("" for all)')
    p.add_argument("--offset", type=nonneg_int, default=0)
    p.add_argument("--length", type=nonneg_int, default=None)
    p.set_defaults(func=cmd_get)
    p = sub.add_parser("cat", help="write a file to stdout")
    p.add_argument("ref", metavar="HASH|NAME", type=name_arg)
    p.set_defaults(func=cmd_cat)
    p = sub.add_parser("ls", help="list names")
    p.add_argument("prefix", nargs="?", default="", type=name_arg)
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("stat", help="size, chunks, stored bytes, dedup, cache and locations")
    p.add_argument("ref", metavar="HASH|NAME", type=name_arg)
    p.set_defaults(func=cmd_stat)
    p = sub.add_parser("exists", help="exit 0 if the node has the file, 1 if not")
    p.add_argument("hash", metavar="HASH")
    p.set_defaults(func=cmd_exists)
    p = sub.add_parser("rm", help="remove names (or files by hash)")
    p.add_argument("refs", nargs="+", metavar="NAME|HASH", type=name_arg)
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("mv", help="rename")
    p.add_argument("old", type=name_arg)
    p.add_argument("new", type=name_arg)
    p.set_defaults(func=cmd_mv)
