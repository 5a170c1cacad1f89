"""CLI verbs on the node: init, key, gc, cache, info, status, upload, repair, recover, config
(`backend` is in backends.py)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from ..cluster.engine import Engine
from ..errors import NotFoundError, UsageError
from ..store.home import HomeLock
from ..store.store import MAX_PACK, MIN_PACK
from ..units import format_size, parse_size
from . import backends as backend_cmds
from .common import (
    ask_passphrase,
    check_input_file,
    check_output_file,
    check_output_folder,
    daemon_status,
    finish,
    home_of,
    home_path,
    open_node,
    positive_int,
    save_index_copy,
)
from .output import Output


def cmd_init(args: argparse.Namespace, out: Output) -> int:
    """mosaic init [--no-passphrase] [--key-file FILE] [chunk/pack/cache sizes]"""
    check_output_folder(home_path(args))
    if args.key_file:
        check_input_file(args.key_file)
    pw = None if args.no_passphrase else ask_passphrase(confirm=True)
    if not args.no_passphrase and not pw:
        raise UsageError("no passphrase: set MOSAIC_PASSPHRASE, run on a terminal, or use --no-passphrase")
    kf_pw = None
    if args.key_file:
        from ..store import keys as keymod
        doc = keymod.read_key_file(Path(args.key_file))
        if keymod.is_sealed(doc):
            import os
            kf_pw = (os.environ.get("MOSAIC_KEY_FILE_PASSPHRASE") or os.environ.get("MOSAIC_PASSPHRASE")
                     or pw)
            if kf_pw is None:
                raise UsageError("the key file is sealed: set MOSAIC_KEY_FILE_PASSPHRASE or MOSAIC_PASSPHRASE")
    node = Engine.init(args.home, passphrase=pw, no_passphrase=args.no_passphrase,
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
    from ..store import keys as keymod
    h = home_of(args)
    doc = keymod.read_key_file(h.key_path)
    if args.output == "-":  # the key file on stdout (for a pipe to the other machine)
        sys.stdout.write(keymod.key_file_text(doc))
        sys.stdout.flush()
        return 0
    dest = Path(args.output)
    check_output_file(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        keymod.write_key_file(dest, doc, exclusive=True)
    except FileExistsError:
        raise UsageError(f"{dest} exists; not overwriting a key file") from None
    out.line(f"key exported to {dest} ({'sealed under the node passphrase' if doc.get('sealed') else 'UNSEALED: keep it secret'})")
    out.doc({"file": str(dest), "key_id": doc.get("key_id"), "sealed": bool(doc.get("sealed"))})
    return 0


def cmd_gc(args: argparse.Namespace, out: Output) -> int:
    """mosaic gc [--dry-run] [--grace SECONDS] [--max-unused PERCENT]"""
    from ..cloud.gc import GRACE_S, gc
    with open_node(args) as node:
        grace_s = GRACE_S if args.grace is None else args.grace
        rep = gc(node.cloud, dry_run=args.dry_run, grace_s=grace_s,
                 remote_repack_threshold=args.max_unused / 100)
        warning = None if args.dry_run else save_index_copy(node)
    verb = "would remove" if rep.dry_run else "removed"
    out.line(f"{verb} {rep.dead_chunks} unreferenced chunks ({format_size(rep.dead_bytes)}); "
             f"packs dropped {rep.packs_deleted}, repacked {rep.packs_repacked}; "
             f"{format_size(rep.bytes_freed)} freed")
    if rep.marked or rep.remote_deleted or rep.marks_waiting or rep.packs_moved:
        out.line(f"shared backends: {rep.marked} packs marked, {rep.remote_deleted} deleted "
                 f"({format_size(rep.remote_bytes_freed)}), {rep.marks_waiting} marks waiting"
                 + (f", moved off {rep.packs_moved} packs other nodes dropped"
                    if rep.packs_moved else ""))
    for tag, why in sorted(rep.waiting_for.items()):
        out.info(f"mosaic: gc: waiting for node {tag}: {why}")
    for e in rep.errors:
        out.info(f"mosaic: gc: {e}")
    if rep.errors and not warning:
        warning = f"gc could not finish on every backend: {rep.errors[0]}"
    return finish(out, rep.__dict__, warning)


def cmd_cache(args: argparse.Namespace, out: Output) -> int:
    """mosaic cache [trim [--to SIZE]]"""
    from ..cloud.cache import cache_info, trim
    with open_node(args) as node:
        if args.action == "trim":
            n, freed = trim(node.cloud, _size(args.to))
            out.line(f"evicted {n} packs, {format_size(freed)}")
        info = cache_info(node.cloud)
    out.line(f"capacity {format_size(info.capacity)}, used {format_size(info.used)} "
             f"({info.usage_ratio:.1%}) in {info.local_packs} packs; "
             f"{format_size(info.evictable_bytes)} safely stored elsewhere")
    out.doc({"capacity": info.capacity, "used": info.used, "usage_ratio": info.usage_ratio,
             "local_packs": info.local_packs, "evictable_bytes": info.evictable_bytes})
    return 0



def cmd_status(args: argparse.Namespace, out: Output) -> int:
    """mosaic status [HASH|NAME]: daemon, pending uploads, rates, errors; or where a file is."""
    from ..cloud.repair import status
    with open_node(args) as node:
        if args.ref:
            from ..store.verify import file_stat
            st = file_stat(node.store, node.resolve(args.ref).file_id)
            fid = bytes.fromhex(st["hash"])
            with node.index.read() as txn:
                pinned = txn.get(fid, db=node.index.db["pins"]) is not None
            nodes = {}
            if node.index.repl_origin is not None:
                from ..cluster.filelog import holders
                from ..cluster.identity import format_node_id
                nodes = {format_node_id(k): v for k, v in holders(node.index, fid).items()}
            complete = sorted(k for k, v in nodes.items() if v)
            target = node.config.cluster_copies
            where = {"hash": st["hash"], "size": st["size"], "local": st["cached_fraction"],
                     "locations": st["locations"], "pinned": pinned,
                     "complete_on_nodes": complete, "cluster_copies_target": target,
                     "target_met": len(complete) >= target if nodes else None}
            out.line(f"{st['hash']}  {st['size']} bytes")
            out.line("  here: " + ", ".join(f"{k} {v:.0%}" for k, v in st["locations"].items())
                     + ("  (pinned)" if pinned else ""))
            if nodes:
                out.line(f"  complete on {len(complete)} node(s) (target {target}"
                         f"{', met' if len(complete) >= target else ', NOT met'}):")
                for k in complete:
                    out.line(f"    {k}")
            out.doc(where)
            return 0
        st = status(node.cloud)
        st["daemon"] = daemon_status(node.home)
    d = st["daemon"]
    out.line(f"daemon: {'ready on ' + d['listen'] + ' (pid ' + str(d['pid']) + ')' if d.get('running') else 'not running'}")
    for b, p in st["pending"].items():
        out.line(f"pending  {b:12} {p['packs']:>5} packs  {format_size(p['bytes']):>10}")
    for k, r in st["transfers"].items():
        rate = r["bytes"] / r["seconds"] if r["seconds"] else 0.0
        out.line(f"last hour {k:20} {r['count']:>5} transfers {format_size(r['bytes']):>10} "
                 f"({format_size(rate)}/s)")
    for e in st["recent_errors"]:
        out.line(f"error    {e['backend']:12} {e['kind']}: {e['error']}")
    out.line(f"repairs queued: {st['repairs_queued']}")
    if st["under_replicated_packs"]:
        sys.stderr.write(f"mosaic: warning: {st['under_replicated_packs']} packs have fewer than "
                         f"{st['copies_wanted']} backend copies (`mosaic upload`, `mosaic repair`)\n")
    out.doc(st)
    return 0


def cmd_upload(args: argparse.Namespace, out: Output) -> int:
    """mosaic upload: send every queued upload now."""
    from ..cloud.uploads import upload_pending
    with open_node(args) as node:
        if args.parallel:
            node.store.config = replace(node.config, upload_parallel=args.parallel)
        with HomeLock(node.home, exclusive=False), \
                out.progress(_queued_bytes(node) if out.drawing else None, "upload") as bar:
            n, errors = upload_pending(node.cloud, raise_on_error=False, progress=bar)
        warning = save_index_copy(node) if n else None
    for e in errors:
        out.info(f"mosaic: upload: {e}")
    out.line(f"uploaded {n} packs" + (f"; {len(errors)} failed (still queued)" if errors else ""))
    return finish(out, {"uploaded": n, "errors": errors}, warning, 0 if not errors else 5)


def _queued_bytes(node: Engine) -> int:
    """The bytes `mosaic upload` sends: each queued pack once per backend it goes to."""
    configured = {b.name for b in node.config.backends}
    idx = node.index
    with idx.read() as txn:
        recs = [idx.get_pack(p, txn) for p, b in idx.iter_uploads(txn) if b in configured]
    return sum(r.size for r in recs if r is not None)


def cmd_repair(args: argparse.Namespace, out: Output) -> int:
    """mosaic repair: restore missing or corrupt copies and top packs up to `copies`."""
    from ..cloud.repair import repair
    with open_node(args) as node:
        rep = repair(node.cloud)
        warning = save_index_copy(node)
    for e in rep.failed:
        out.info(f"mosaic: repair: {e}")
    out.line(f"repaired {rep.repaired} copies, added {rep.added} copies"
             + (f"; {len(rep.failed)} problems remain" if rep.failed else ""))
    return finish(out, rep.__dict__, warning, 0 if not rep.failed else 5)


def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    """mosaic recover --from NAME [--list] [--node TAG] [--accept-gaps]: rebuild this (empty)
    node's index from a node's index copy on a backend."""
    from ..cloud.indexrecover import list_copies, recover
    if not any(b.name == args.source for b in home_of(args).read_config().backends):
        raise NotFoundError(f"no backend named {args.source} (add it first with `mosaic backend add`)")
    with open_node(args) as node:
        if args.list:
            found = list_copies(node.cloud, args.source)
            for c in found:
                when = _when(c.time)
                state = (f"unreadable: {c.error}" if c.error else
                         f"incomplete: {c.gap}" if c.gap else "complete")
                out.line(f"{c.tag}  {when}  {c.files} files, {c.names} names  ({state})")
            if not found:
                out.line(f"no index copy on {args.source}")
            out.doc([c.to_json() for c in found])
            return 0
        with HomeLock(node.home, exclusive=True):  # it writes the whole index (and the tag)
            res = recover(node.cloud, args.source, partial=args.accept_gaps, node=args.node)
    for w in res["warnings"]:
        out.info(f"mosaic: warning: {w}")
    out.line(f"recovered node {res['node']}: {res['files']} files, {res['names']} names, "
             f"{res['packs']} packs from {res['objects']} index objects on {res['from']}")
    out.doc(res)
    return 0


def _when(ns: int) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9)) if ns else "?"


def _fraction(s: str) -> float:
    """An argparse type: a percentage 0-100."""
    try:
        v = float(s.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {s!r}") from None
    if not 0 <= v <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return v


def _seconds(s: str) -> float:
    """An argparse type: seconds >= 0 (a number, or with s, m, h or d)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    k = units.get(s[-1:].lower(), 0)
    try:
        v = float(s[:-1] if k else s) * (k or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {s!r}") from None
    if v < 0 or v != v:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return v


def cmd_config(args: argparse.Namespace, out: Output) -> int:
    """mosaic config [get KEY | set KEY VALUE]"""
    h = home_of(args)
    cfg = h.read_config()
    settable = {"copies": int, "cache_capacity": parse_size, "upload_parallel": int,
                "compression_level": int, "pack_size": parse_size, "workers": int,
                "cluster_copies": int}
    if args.action == "set":
        if args.key not in settable:
            raise UsageError(f"settable keys: {', '.join(settable)}")
        try:
            value = settable[args.key](args.value)
        except ValueError:
            raise UsageError(f"bad value for {args.key}: {args.value!r}") from None
        if args.key == "copies" and not 0 <= value <= 16:
            raise UsageError("copies must be between 0 (automatic) and 16")
        if args.key == "copies" and value > len(cfg.backends):
            raise UsageError(f"copies {value} needs at least {value} backends; this node has "
                             f"{len(cfg.backends)} (add backends first)")
        if args.key == "pack_size" and not MIN_PACK <= value <= MAX_PACK:
            raise UsageError(f"pack_size must be between {format_size(MIN_PACK)} and "
                             f"{format_size(MAX_PACK)}")
        if args.key == "cache_capacity" and value < 0:
            raise UsageError("cache_capacity cannot be negative")
        if args.key == "compression_level" and not 0 <= value <= 22:
            raise UsageError("compression_level must be between 0 (off) and 22")
        if args.key in ("workers", "upload_parallel", "cluster_copies") and not 1 <= value <= 64:
            raise UsageError(f"{args.key} must be between 1 and 64")
        cfg = replace(cfg, **{args.key: value})
        h.write_config(cfg)
    doc = {k: getattr(cfg, k) for k in settable} | {
        "chunk_min": cfg.chunk_min, "chunk_avg": cfg.chunk_avg, "chunk_max": cfg.chunk_max,
        "effective_copies": cfg.effective_copies()}
    if args.action == "get":
        if args.key not in doc:
            raise UsageError(f"unknown key {args.key}")
        out.line(str(doc[args.key]))
        out.doc({args.key: doc[args.key]})
        return 0
    for k, v in doc.items():
        out.line(f"{k} = {v}")
    out.doc(doc)
    return 0


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    """mosaic info: node totals."""
    with open_node(args) as node:
        idx = node.index
        from ..cloud.cache import cache_info
        ci = cache_info(node.cloud)
        doc = {"home": str(node.home.root), "key_id": node.keys.key_id,
               "files": idx.count("manifests"), "names": idx.names.count(idx.read()),
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
    p = sub.add_parser("gc", help="remove chunks no manifest references (and, across the nodes "
                                  "sharing a backend, packs none of them uses: docs/gc.md)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--grace", type=_seconds, default=None, metavar="DURATION",
                   help="keep temp files and packs no node knows until this old "
                        "(default 1h; e.g. 90s, 30m, 2h)")
    p.add_argument("--max-unused", type=_fraction, default=50.0, metavar="PERCENT",
                   help="rewrite a pack of this node's that is only on backends once more than "
                        "this share of it is garbage (default 50)")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("cache", help="show or trim the local cache")
    p.add_argument("action", nargs="?", choices=["trim"], default=None)
    p.add_argument("--to", metavar="SIZE")
    p.set_defaults(func=cmd_cache)
    backend_cmds.register(sub)
    p = sub.add_parser("info", help="node totals")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("status", help="daemon, pending uploads, transfer rates, recent errors; "
                       "or where a file is")
    p.add_argument("ref", nargs="?", metavar="HASH|NAME")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("upload", help="send queued uploads now")
    p.add_argument("--parallel", type=positive_int, metavar="N")
    p.set_defaults(func=cmd_upload)
    p = sub.add_parser("repair", help="restore missing or corrupt copies from healthy ones")
    p.set_defaults(func=cmd_repair)
    p = sub.add_parser("recover", help="rebuild an empty node's index from a backend's index copy")
    p.add_argument("--from", dest="source", required=True, metavar="NAME")
    p.add_argument("--list", action="store_true",
                   help="list the node index copies on the backend (node tag, time, files)")
    p.add_argument("--node", metavar="TAG", help="whose index copy (needed when there are several)")
    p.add_argument("--accept-gaps", action="store_true",
                   help="recover the state before a missing or unreadable log instead of failing")
    p.set_defaults(func=cmd_recover)
    p = sub.add_parser("config", help="show or change settings (copies, cache_capacity, ...)")
    p.add_argument("action", nargs="?", choices=["get", "set"])
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?")
    p.set_defaults(func=cmd_config)
