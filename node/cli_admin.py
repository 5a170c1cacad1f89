"""CLI verbs on the node: init, key, gc, cache, backend, info."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .api import Node
from .cli_files import open_node
from .errors import HomeError, UsageError
from .home import BackendConfig, Home, default_home
from .output import Output
from .units import format_size, parse_size


def cmd_init(args: argparse.Namespace, out: Output) -> int:
    """mosaic init [--no-passphrase] [--key-file FILE] [chunk/pack/cache sizes]"""
    from .cli import ask_passphrase
    pw = None if args.no_passphrase else ask_passphrase(confirm=True)
    if not args.no_passphrase and not pw:
        raise UsageError("no passphrase: set MOSAIC_PASSPHRASE, run on a terminal, or use --no-passphrase")
    kf_pw = None
    if args.key_file:
        from . import keys as keymod
        doc = keymod.read_key_file(Path(args.key_file))
        if keymod.is_sealed(doc):
            import os
            kf_pw = os.environ.get("MOSAIC_KEY_FILE_PASSPHRASE", pw)
            if kf_pw is None:
                raise UsageError("the key file is sealed: set MOSAIC_KEY_FILE_PASSPHRASE or MOSAIC_PASSPHRASE")
    node = Node.init(args.home, passphrase=pw, no_passphrase=args.no_passphrase,
                     key_file=args.key_file, key_file_passphrase=kf_pw,
                     chunk_min=_size(args.chunk_min), chunk_avg=_size(args.chunk_avg),
                     chunk_max=_size(args.chunk_max), pack_size=_size(args.pack_size),
                     cache_capacity=_size(args.cache_capacity))
    with node:
        c = node.config
        out.line(f"initialised node at {node.home.root} (key id {node.keys.key_id})")
        out.doc({"home": str(node.home.root), "key_id": node.keys.key_id,
                 "chunking": {"min": c.chunk_min, "avg": c.chunk_avg, "max": c.chunk_max},
                 "pack_size": c.pack_size, "sealed": not args.no_passphrase})
    return 0


def _size(v: str | None) -> int | None:
    return parse_size(v) if v is not None else None


def cmd_key_export(args: argparse.Namespace, out: Output) -> int:
    """mosaic key export -o FILE: the key file a second node joins with."""
    from . import keys as keymod
    h = Home(Path(args.home) if args.home else default_home())
    h.require()
    doc = keymod.read_key_file(h.key_path)
    dest = Path(args.output)
    if dest.exists():
        raise UsageError(f"{dest} exists; not overwriting a key file")
    keymod.write_key_file(dest, doc)
    out.line(f"key exported to {dest} ({'sealed under the node passphrase' if doc.get('sealed') else 'UNSEALED: keep it secret'})")
    out.doc({"file": str(dest), "key_id": doc.get("key_id"), "sealed": bool(doc.get("sealed"))})
    return 0


def cmd_gc(args: argparse.Namespace, out: Output) -> int:
    """mosaic gc [--dry-run]"""
    from .maintenance import gc
    with open_node(args) as node:
        rep = gc(node, dry_run=args.dry_run)
    verb = "would remove" if rep.dry_run else "removed"
    out.line(f"{verb} {rep.dead_chunks} unreferenced chunks ({format_size(rep.dead_bytes)}); "
             f"packs deleted {rep.packs_deleted}, repacked {rep.packs_repacked}; "
             f"{format_size(rep.bytes_freed)} freed")
    out.doc(rep.__dict__)
    return 0


def cmd_cache(args: argparse.Namespace, out: Output) -> int:
    """mosaic cache [trim [--to SIZE]]"""
    from .cache import cache_info, trim
    with open_node(args) as node:
        if args.action == "trim":
            n, freed = trim(node, _size(args.to))
            out.line(f"evicted {n} packs, {format_size(freed)}")
        info = cache_info(node)
    out.line(f"capacity {format_size(info.capacity)}, used {format_size(info.used)} "
             f"({info.usage_ratio:.1%}) in {info.local_packs} packs; "
             f"{format_size(info.evictable_bytes)} safely stored elsewhere")
    out.doc({"capacity": info.capacity, "used": info.used, "usage_ratio": info.usage_ratio,
             "local_packs": info.local_packs, "evictable_bytes": info.evictable_bytes})
    return 0


def cmd_backend(args: argparse.Namespace, out: Output) -> int:
    """mosaic backend add dir NAME PATH | ls | rm NAME"""
    h = Home(Path(args.home) if args.home else default_home())
    h.require()
    cfg = h.read_config()
    if args.action == "add":
        if any(b.name == args.name for b in cfg.backends):
            raise UsageError(f"a backend named {args.name} exists")
        if args.kind != "dir":
            raise UsageError(f"backend kind {args.kind!r} is not supported yet (dir)")
        path = Path(args.target).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        opts: dict = {"path": str(path)}
        if args.quota:
            opts["quota"] = parse_size(args.quota)
        cfg = replace(cfg, backends=(*cfg.backends, BackendConfig(args.name, args.kind, opts)))
        h.write_config(cfg)
        out.line(f"added {args.kind} backend {args.name}")
        out.doc({"added": args.name, "kind": args.kind, "options": opts})
        return 0
    if args.action == "rm":
        if not any(b.name == args.name for b in cfg.backends):
            raise HomeError(f"no backend named {args.name}")
        h.write_config(replace(cfg, backends=tuple(b for b in cfg.backends if b.name != args.name)))
        out.line(f"removed backend {args.name} (its objects are left in place)")
        out.doc({"removed": args.name})
        return 0
    rows = [{"name": b.name, "kind": b.kind, **b.options} for b in cfg.backends]
    for r in rows:
        out.line("  ".join(f"{k}={v}" for k, v in r.items()))
    out.doc(rows)
    return 0


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    """mosaic info: node totals."""
    with open_node(args) as node:
        idx = node.index
        from .cache import cache_info
        ci = cache_info(node)
        doc = {"home": str(node.home.root), "key_id": node.keys.key_id,
               "files": idx.count("manifests"), "names": idx.count("names"),
               "chunks": idx.count("chunks"), "packs": idx.count("packs"),
               "local_bytes": ci.used, "backends": [b.name for b in node.config.backends]}
    for k, v in doc.items():
        out.line(f"{k + ':':12} {v}")
    out.doc(doc)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the node verbs to the parser."""
    p = sub.add_parser("init", help="create a node home")
    p.add_argument("--no-passphrase", action="store_true",
                   help="store the key readable by the owner only (unattended nodes)")
    p.add_argument("--key-file", help="join the dedup domain of the node that exported this key")
    p.add_argument("--chunk-min")
    p.add_argument("--chunk-avg")
    p.add_argument("--chunk-max")
    p.add_argument("--pack-size")
    p.add_argument("--cache-capacity")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("key", help="key management")
    ks = p.add_subparsers(dest="key_action", metavar="ACTION")
    ks.required = True
    e = ks.add_parser("export", help="write the key file for a joining node")
    e.add_argument("-o", "--output", required=True, metavar="FILE")
    e.set_defaults(func=cmd_key_export)
    p = sub.add_parser("gc", help="remove chunks no manifest references")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("cache", help="show or trim the local cache")
    p.add_argument("action", nargs="?", choices=["trim"], default=None)
    p.add_argument("--to", metavar="SIZE")
    p.set_defaults(func=cmd_cache)
    p = sub.add_parser("backend", help="add, list or remove backends")
    bs = p.add_subparsers(dest="action", metavar="ACTION")
    bs.required = True
    a = bs.add_parser("add", help="add a backend: dir NAME PATH")
    a.add_argument("kind", choices=["dir", "s3", "webdav", "rclone"])
    a.add_argument("name")
    a.add_argument("target", help="PATH for dir")
    a.add_argument("--quota", metavar="SIZE")
    a.set_defaults(func=cmd_backend)
    r = bs.add_parser("rm")
    r.add_argument("name")
    r.set_defaults(func=cmd_backend)
    ls = bs.add_parser("ls")
    ls.set_defaults(func=cmd_backend)
    p = sub.add_parser("info", help="node totals")
    p.set_defaults(func=cmd_info)
