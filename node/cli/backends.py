"""CLI verbs for backends: `mosaic backend add|rm|drain|nodes|ls`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..cluster.engine import Engine
from ..errors import NotFoundError, StorageError, UsageError
from ..store.home import BackendConfig
from ..units import format_size, parse_size
from .common import (
    check_input_file,
    check_output_folder,
    finish,
    home_of,
    open_node,
    save_index_copy,
)
from .output import Output


def _backend_secrets(kind: str, args: argparse.Namespace) -> dict[str, str]:
    """Credentials for a new backend, from the environment or a prompt (never from argv)."""
    import getpass
    import os

    def ask(env: str, prompt: str) -> str | None:
        v = os.environ.get(env)
        if v is None and sys.stdin.isatty():
            v = getpass.getpass(prompt) or None
        return v

    if kind == "s3":
        out = {}
        for env, key, prompt in (("AWS_ACCESS_KEY_ID", "access_key", "Access key ID: "),
                                 ("AWS_SECRET_ACCESS_KEY", "secret_key", "Secret access key: ")):
            v = ask(env, prompt)
            if v:
                out[key] = v
        if os.environ.get("AWS_SESSION_TOKEN"):
            out["session_token"] = os.environ["AWS_SESSION_TOKEN"]
        return out
    if kind == "webdav":
        pw = ask("MOSAIC_WEBDAV_PASSWORD", "WebDAV password: ")
        return {"password": pw} if pw else {}
    return {}


def _backend_options(kind: str, args: argparse.Namespace) -> dict:
    opts: dict = {}
    if kind == "dir":
        if not args.target:
            raise UsageError("backend add dir NAME PATH")
        path = Path(args.target).expanduser().resolve()
        check_output_folder(path)  # made by _check_backend (the one place a dir root is made)
        opts["path"] = str(path)
    elif kind == "s3":
        if not args.bucket:
            raise UsageError("backend add s3 NAME --bucket B [--endpoint URL] [--region R] [--prefix P]")
        opts["bucket"] = args.bucket
        for k in ("endpoint", "region", "prefix"):
            if getattr(args, k):
                opts[k] = getattr(args, k)
    elif kind == "webdav":
        if not args.target:
            raise UsageError("backend add webdav NAME URL [--username U]")
        opts["url"] = args.target
        if args.username:
            opts["username"] = args.username
        if args.prefix:
            opts["prefix"] = args.prefix
    elif kind == "rclone":
        if not args.target:
            raise UsageError("backend add rclone NAME REMOTE:PATH [--rclone-config FILE]")
        opts["remote"] = args.target
        if args.rclone_config:
            check_input_file(Path(args.rclone_config).expanduser())
            opts["config_path"] = str(Path(args.rclone_config).expanduser().resolve())
    if args.quota:
        opts["quota"] = parse_size(args.quota)
    return opts


def _check_backend(kind: str, name: str, opts: dict, secrets: dict, key_id: str,
                   registration: tuple[str, bytes] | None = None) -> tuple[str, bool]:
    """Reach the backend once (list its packs) and claim it before recording it:
    (backend ID, adopted). A dir backend's folder is created here and nowhere else; the
    marker (`mosaic-backend.json`) is written unless one of this key is there already.
    `registration` (object name, sealed bytes) enters the node in the backend's registry
    once the backend is claimed (cloud/registry.py)."""
    import trio

    from mosaic.backends import open_backend
    from mosaic.backends.errors import BackendError

    from ..cloud.markers import claim_backend

    async def probe() -> tuple[str, bool]:
        with trio.fail_after(60):
            b = open_backend(kind, name, opts, secrets)
            try:
                create = getattr(b, "create_root", None)
                if create is not None:
                    await create()
                await b.list("packs/")
                claimed = await claim_backend(b, key_id)
                if registration is not None:
                    await b.put(*registration)
                return claimed
            finally:
                await b.close()

    try:
        return trio.run(probe)
    except BackendError as e:
        raise StorageError(f"cannot reach backend {name}: {e} (use --no-check to add it anyway)") from None
    except trio.TooSlowError:
        raise StorageError(f"backend {name} did not answer within 60 s") from None


def cmd_backend(args: argparse.Namespace, out: Output) -> int:
    """mosaic backend add KIND NAME ... | ls | rm NAME | drain NAME"""
    h = home_of(args)
    cfg = h.read_config()
    if args.action == "add":
        import re
        if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", args.name) or args.name.startswith("@"):
            raise UsageError("backend names are 1-64 letters, digits, '.', '_' or '-'")
        if any(b.name == args.name for b in cfg.backends):
            raise UsageError(f"a backend named {args.name} exists")
        opts = _backend_options(args.kind, args)
        secrets = _backend_secrets(args.kind, args)
        adopted = False
        with open_node(args) as node:
            if not args.no_check:  # with --no-check: no marker, so the backend is used unchecked
                opts["backend_id"], adopted = _check_backend(args.kind, args.name, opts, secrets,
                                                             node.keys.key_id, _registration(node))
            if secrets:
                from ..cloud.credentials import load_secrets, save_secrets
                allsec = load_secrets(node.home, node.keys)
                allsec[args.name] = secrets
                save_secrets(node.home, node.keys, allsec)
        cfg = replace(cfg, backends=(*cfg.backends, BackendConfig(args.name, args.kind, opts)))
        h.write_config(cfg)
        ident = (f" (backend id {opts['backend_id']}, {'adopted' if adopted else 'new'})"
                 if "backend_id" in opts else " (not checked: no identity marker)")
        out.line(f"added {args.kind} backend {args.name}{ident}")
        out.doc({"added": args.name, "kind": args.kind, "options": opts,
                 "secrets": sorted(secrets), "backend_id": opts.get("backend_id"),
                 "adopted": adopted})
        return 0
    if args.action == "nodes":
        return _backend_nodes(args, out, cfg)
    if args.action in ("rm", "drain"):
        if not any(b.name == args.name for b in cfg.backends):
            raise NotFoundError(f"no backend named {args.name}")
        if args.action == "drain":
            from ..cloud.repair import drain
            with open_node(args) as node:
                moved, deleted, errors = drain(node.cloud, args.name)
                warning = save_index_copy(node)
            for e in errors:
                out.info(f"mosaic: drain: {e}")
            out.line(f"drained {args.name}: {moved} copies made elsewhere, {deleted} objects removed"
                     + ("" if not errors else f"; {len(errors)} problems, not finished"))
            return finish(out, {"backend": args.name, "copied": moved, "deleted": deleted,
                                "errors": errors}, warning, 0 if not errors else 5)
        with open_node(args) as node:
            with node.index.read() as txn:
                held = sum(1 for _, r in node.index.iter_packs(txn) if args.name in r.locations)
        if held and not args.force:
            raise UsageError(f"{args.name} still holds {held} packs: run `mosaic backend drain "
                             f"{args.name}` first (or --force to forget them)")
        h.write_config(replace(cfg, backends=tuple(b for b in cfg.backends if b.name != args.name)))
        out.line(f"removed backend {args.name}")
        out.doc({"removed": args.name})
        return 0
    rows = _backend_rows(args, cfg)
    for r in rows:
        q = format_size(r["quota"]) if r["quota"] else "unlimited"
        out.line(f"{r['name']:12} {r['kind']:7} used {format_size(r['used']):>10} / {q:<10} "
                 f"packs {r['packs']:>6}  pending {r['pending']:>4}  errors(24h) {r['errors_24h']:>3}  "
                 f"{r['health']}")
    out.doc(rows)
    return 0


def _registration(node: Engine) -> tuple[str, bytes] | None:
    """This node's registry object for a backend being added (None without a node tag)."""
    import time

    from ..cloud.registry import node_object, seal_doc
    tag = node.config.node_tag
    if not tag:
        return None
    name = node_object(tag)
    return name, seal_doc(node.keys.metadata, name, {"tag": tag, "time": time.time_ns()})


def _backend_nodes(args: argparse.Namespace, out: Output, cfg) -> int:
    """mosaic backend nodes NAME [--forget TAG]"""
    from mosaic.backends.errors import BackendError

    from ..cloud.registry import forget_node, node_list
    if not any(b.name == args.name for b in cfg.backends):
        raise NotFoundError(f"no backend named {args.name}")
    with open_node(args) as node:
        try:
            if args.forget:
                if args.forget == node.config.node_tag:
                    raise UsageError("this node cannot forget itself (remove the backend instead)")
                if not forget_node(node.cloud, args.name, args.forget):
                    raise NotFoundError(f"node {args.forget} is not registered on {args.name}")
                out.line(f"forgot node {args.forget} on {args.name}")
                out.doc({"backend": args.name, "forgot": args.forget})
                return 0
            rows = node_list(node.cloud, args.name)
        except BackendError as e:
            raise StorageError(f"backend {args.name}: {e}") from None
        me = node.config.node_tag
    for r in rows:
        out.line(f"{r['node']}  registered {r['registered']}  index copy {r['index_copy']}"
                 + ("  (this node)" if r["node"] == me else ""))
    out.doc(rows)
    return 0


def _backend_rows(args: argparse.Namespace, cfg) -> list[dict]:
    import time
    with open_node(args) as node:
        spaces = node.backend_spaces()
        since = time.time_ns() - 24 * 3600 * 10**9
        with node.index.read() as txn:
            packs = {b.name: 0 for b in cfg.backends}
            for _, r in node.index.iter_packs(txn):
                for b in r.locations:
                    if b in packs:
                        packs[b] += 1
            pending = {b.name: 0 for b in cfg.backends}
            for _, b in node.index.iter_uploads(txn):
                if b in pending:
                    pending[b] += 1
            errs: dict[str, int] = {}
            last: dict[str, str] = {}
            for _t, _kind, b, _n, _s, err in node.index.iter_events(since, txn):
                if err:
                    errs[b] = errs.get(b, 0) + 1
                last[b] = f"error: {err[:60]}" if err else "ok"
    return [{"name": b.name, "kind": b.kind, "used": spaces[b.name].used, "quota": spaces[b.name].quota,
             "packs": packs[b.name], "pending": pending[b.name], "errors_24h": errs.get(b.name, 0),
             "health": last.get(b.name, "ok" if not errs.get(b.name) else "error"),
             **{k: v for k, v in b.options.items() if k not in ("quota",)}} for b in cfg.backends]


def register(sub: argparse._SubParsersAction) -> None:
    """Add `mosaic backend` and its actions to the parser."""
    p = sub.add_parser("backend", help="add, list or remove backends")
    bs = p.add_subparsers(dest="action", metavar="ACTION")
    bs.required = True
    a = bs.add_parser("add", help="add a backend: dir NAME PATH | s3 NAME --bucket B | "
                      "webdav NAME URL | rclone NAME REMOTE:PATH")
    a.add_argument("kind", choices=["dir", "s3", "webdav", "rclone"])
    a.add_argument("name")
    a.add_argument("target", nargs="?", help="PATH (dir), URL (webdav) or REMOTE:PATH (rclone)")
    a.add_argument("--quota", metavar="SIZE", help="e.g. 500MB or 2GiB")
    a.add_argument("--bucket")
    a.add_argument("--endpoint", help="S3 endpoint URL (MinIO, B2, R2, Wasabi, ...)")
    a.add_argument("--region")
    a.add_argument("--prefix")
    a.add_argument("--username")
    a.add_argument("--rclone-config", metavar="FILE")
    a.add_argument("--no-check", action="store_true", help="do not contact the backend first")
    a.set_defaults(func=cmd_backend)
    r = bs.add_parser("rm", help="forget a backend (after drain)")
    r.add_argument("name")
    r.add_argument("--force", action="store_true", help="forget it even if it still holds packs")
    r.set_defaults(func=cmd_backend)
    d = bs.add_parser("drain", help="move a backend's packs to the others")
    d.add_argument("name")
    d.set_defaults(func=cmd_backend)
    nd = bs.add_parser("nodes", help="the nodes registered on a backend (gc waits for each)")
    nd.add_argument("name")
    nd.add_argument("--forget", metavar="TAG",
                    help="remove a node that is gone for good: its registration and index copy")
    nd.set_defaults(func=cmd_backend)
    ls = bs.add_parser("ls")
    ls.set_defaults(func=cmd_backend)
