"""CLI verbs for nodes on several machines: id, peer, pin."""

from __future__ import annotations

import argparse
import contextlib
import time

from ..errors import MosaicError, NotFoundError, UsageError
from ..store.home import HomeLock
from .common import daemon_alive, home_of, open_node
from .output import Output


def cmd_id(args: argparse.Namespace, out: Output) -> int:
    """mosaic id: this node's ID (creates the identity on first use)."""
    from ..cluster.identity import Identity
    ident = Identity.load_or_create(home_of(args).root)
    out.line(ident.node_id_str)
    out.doc({"node_id": ident.node_id_str})
    return 0


def cmd_peer(args: argparse.Namespace, out: Output) -> int:
    """mosaic peer add NODE_ID[@HOST:PORT] | ls | rm NODE_ID

    `ls` shows, per peer, the log entries this node holds that the peer has not yet
    acknowledged (0 when in sync; `lag_entries` in --json). `rm` stops trusting the peer;
    a running daemon closes its connection within a second."""
    from ..cluster.identity import Identity, format_node_id, parse_node_id
    from ..cluster.peers import Peers
    from ..cluster.syncstore import enable
    with open_node(args) as node, (HomeLock(node.home, exclusive=False)  # a writer (not ls)
                                   if args.action in ("add", "rm") else contextlib.nullcontext()):
        peers = Peers(node.index)
        if args.action == "add":
            spec = args.peer
            pid_text, _, addr = spec.partition("@")
            try:
                pid = parse_node_id(pid_text)
            except ValueError as e:
                raise UsageError(f"bad node ID: {e}") from None
            if addr:
                from ..cluster.daemon import split_addr
                try:
                    split_addr(addr)
                except ValueError as e:
                    raise UsageError(str(e)) from None
            ident = Identity.load_or_create(node.home.root)
            if pid == ident.node_id:
                raise UsageError("that is this node's own ID")
            enable(node.index, ident.node_id)
            peers.add(pid, addr or None)
            out.line(f"trusting {format_node_id(pid)}" + (f" at {addr}" if addr else ""))
            out.doc({"added": format_node_id(pid), "addr": addr or None})
            return 0
        if args.action == "rm":
            try:
                pid = parse_node_id(args.peer)
            except ValueError as e:
                raise UsageError(f"bad node ID: {e}") from None
            if not peers.remove(pid):
                raise NotFoundError(f"no such peer: {args.peer}")
            out.line(f"removed {format_node_id(pid)}")
            out.doc({"removed": format_node_id(pid)})
            return 0
        rows = []
        for pid, rec in sorted(peers.all().items()):
            lag = rec.get("lag")
            rows.append({"node_id": format_node_id(pid), "addr": rec.get("addr"),
                         "connected": bool(rec.get("connected")) and daemon_alive(node.home),
                         "last_seen": rec.get("last_seen") or None, "error": rec.get("error"),
                         "lag_entries": lag})
    for r in rows:
        seen = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["last_seen"]))
                if r["last_seen"] else "never")
        out.line(f"{r['node_id']}  {r['addr'] or '-':22} "
                 f"{'connected' if r['connected'] else 'offline':9}  last seen {seen}"
                 + (f"  {r['lag_entries']} entries not acknowledged"
                    if r["lag_entries"] is not None else "")
                 + (f"  ({r['error']})" if r["error"] and not r["connected"] else ""))
    out.doc(rows)
    return 0


def cmd_pin(args: argparse.Namespace, out: Output) -> int:
    """mosaic pin REF...: keep full local copies (fetched now from backends)."""
    from ..cloud.cache import warm
    with open_node(args) as node:
        fids = [node.resolve(r).file_id for r in args.refs]
        with HomeLock(node.home, exclusive=False), node.index.write() as txn:
            for f in fids:
                txn.put(f, b"", db=node.index.db["pins"])
        res = {"files": len(fids), "cached_after": 1.0}
        try:
            res = warm(node.cloud, [f.hex() for f in fids])
        except MosaicError as e:
            out.info(f"mosaic: pin: {e} (the daemon keeps trying)")
    out.line(f"pinned {len(fids)} files ({res['cached_after']:.0%} local)")
    out.doc({"pinned": [f.hex() for f in fids], **res})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the multi-node verbs to the parser."""
    p = sub.add_parser("id", help="print this node's ID")
    p.set_defaults(func=cmd_id)
    p = sub.add_parser("peer", help="add, list or remove trusted peers")
    ps = p.add_subparsers(dest="action", metavar="ACTION")
    ps.required = True
    a = ps.add_parser("add", help="trust NODE_ID and dial it at HOST:PORT")
    a.add_argument("peer", metavar="NODE_ID[@HOST:PORT]")
    a.set_defaults(func=cmd_peer)
    r = ps.add_parser("rm")
    r.add_argument("peer", metavar="NODE_ID")
    r.set_defaults(func=cmd_peer)
    ls = ps.add_parser("ls")
    ls.set_defaults(func=cmd_peer)
    p = sub.add_parser("pin", help="keep full local copies of files")
    p.add_argument("refs", nargs="+", metavar="HASH|NAME")
    p.set_defaults(func=cmd_pin)
