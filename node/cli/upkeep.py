"""The upkeep verbs: check, verify, warm, and the JSON manifest dumps (export, import)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cluster.engine import Engine
from ..errors import IntegrityError, UsageError
from ..store.outfile import output_target, write_atomically, writing_into
from ..units import format_size
from .common import (
    check_output_file,
    finish,
    name_arg,
    open_node,
    read_input,
    save_index_copy,
)
from .output import Output, safe_text


def _fids(node: Engine, refs: list[str], all_: bool) -> list[bytes] | None:
    if all_:
        if refs:
            raise UsageError("give hashes or --all, not both")
        return None
    if not refs:
        raise UsageError("give at least one hash or name, or --all")
    return [node.resolve(r).file_id for r in refs]


def _bytes_of(node: Engine, fids: list[bytes] | None) -> int:
    """The total size of these files (all if None): what verify reads."""
    idx = node.index
    with idx.read() as txn:
        ids = list(idx.iter_manifest_ids(txn)) if fids is None else fids
        return sum(m.size for m in (idx.get_manifest(f, txn) for f in ids) if m is not None)


def _bytes_to_fetch(node: Engine, fids: list[bytes] | None) -> int | None:
    """The stored bytes of the packs these files need that are not local (what warm
    fetches); None if some pack's size is not known yet."""
    idx, seen, total = node.index, set(), 0
    with idx.read() as txn:
        ids = list(idx.iter_manifest_ids(txn)) if fids is None else fids
        for fid in ids:
            m = idx.get_manifest(fid, txn)
            for cid, _ in m.chunks if m else ():
                r = idx.get_chunk(cid, txn)
                if r is None or r.pack_id in seen:
                    continue
                seen.add(r.pack_id)
                if node.cloud.local.has(r.pack_id):
                    continue
                p = idx.get_pack(r.pack_id, txn)
                if p is None or not p.size:
                    return None
                total += p.size
    return total


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    """mosaic check: the index's own consistency (no pack is read, no backend contacted)."""
    from ..store.check import check
    with open_node(args) as node:
        rep = check(node.store)
    for line in rep.problems:
        out.line(line)
    out.line(f"checked {rep.files} files, {rep.names} names, {rep.chunks} chunk records, "
             f"{rep.packs} packs: " + ("ok" if rep.ok else f"{sum(rep.counts.values())} problems")
             + (f"; {rep.garbage_chunks} unreferenced chunks for gc" if rep.garbage_chunks else "")
             + (f"; {rep.orphan_files} orphan pack files" if rep.orphan_files else ""))
    out.doc(rep.to_json())
    return 0 if rep.ok else 3


def cmd_verify(args: argparse.Namespace, out: Output) -> int:
    """mosaic verify [REF...|--all] [--backends [--sample FRACTION]]"""
    from ..store.verify import verify
    doc: dict = {}
    problems = unchecked = 0
    with open_node(args) as node:
        if args.refs or args.all or not args.backends:
            fids = _fids(node, args.refs, args.all)
            with out.progress(_bytes_of(node, fids) if out.drawing else None, "verify") as bar:
                rep = verify(node.store, fids, bar)
            for e in rep.errors:
                sys.stderr.write(f"mosaic: verify: {safe_text(e)}\n")
            out.line(f"verified {rep.files} files, {format_size(rep.bytes)}: "
                     + ("OK" if not rep.errors else f"{len(rep.errors)} problems"))
            doc.update({"files": rep.files, "bytes": rep.bytes, "errors": rep.errors})
            problems += len(rep.errors)
        if args.backends:
            from ..cloud.repair import scrub
            if not 0 < args.sample <= 1:
                raise UsageError("--sample must be in (0, 1]")
            sc = scrub(node.cloud, args.sample)
            for p, b in sc.missing:
                sys.stderr.write(f"mosaic: verify: pack {p[:16]} is missing on {b}\n")
            for p, b in sc.corrupt:
                sys.stderr.write(f"mosaic: verify: pack {p[:16]} is corrupt on {b}\n")
            for u in sc.unreachable:
                sys.stderr.write(f"mosaic: verify: backend unreachable: {u}\n")
            bad = len(sc.missing) + len(sc.corrupt)
            down = len(sc.unreachable)  # not checked: neither a problem found nor queued
            out.line(f"checked {sc.checked} stored objects, {format_size(sc.bytes)}: "
                     + ("OK" if not bad else f"{bad} problems (queued for `mosaic repair`)")
                     + (f"; {down} backends unreachable, not checked" if down else ""))
            with node.index.read() as txn:  # bad copies found earlier and not yet repaired
                earlier = list(node.index.iter_repairs(txn))
            queued = len(earlier)
            if queued and not bad:
                for p, b, reason in earlier:
                    sys.stderr.write(f"mosaic: verify: pack {p.hex()[:16]} is {reason} on {b} "
                                     "(found earlier, awaiting `mosaic repair`)\n")
                out.line(f"{queued} copies found bad earlier still await `mosaic repair`")
            doc["backends"] = {**sc.__dict__, "repairs_queued": queued}
            problems += bad or queued
            unchecked = down
    doc["ok"] = not (problems or unchecked)
    out.doc(doc)
    return 3 if problems else 5 if unchecked else 0


def cmd_export(args: argparse.Namespace, out: Output) -> int:
    """mosaic export [REF...|--all] [-o FILE]"""
    from ..store.transfer import export
    kind, target = "-", Path("-")
    if args.output and args.output != "-":  # a device or FIFO is written into, as by get
        kind, target = output_target(Path(args.output))
        if kind == "replace":
            check_output_file(target)
    with open_node(args) as node:
        fids = _fids(node, args.refs, args.all)
        text = export(node.store, None if fids is None else [f.hex() for f in fids])
    if kind != "-":
        if kind == "into":
            with writing_into(target) as f:
                f.write(text.encode("utf-8"))
        else:
            write_atomically(target, iter([text.encode("utf-8")]))
        out.info(f"exported to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _refuse_stale_dump(node: Engine, data: str | bytes) -> None:
    """IntegrityError (exit 3, nothing imported) if the dump's packs are gone from the
    backends it names: it is older than a gc of the node that made it (docs/gc.md)."""
    from mosaic.protocol.errors import ProtocolError
    from mosaic.protocol.manifest_json import open_dump

    from ..cloud.dumpcheck import gone_packs
    try:
        dump = open_dump(data, node.keys.dump_mac)
    except (ProtocolError, ValueError):
        return  # the import says what is wrong with it
    gone = gone_packs(node.cloud, dump)
    if gone:
        pid, backends = next(iter(gone.items()))
        raise IntegrityError(f"refused the manifest dump: {len(gone)} of the packs it points at "
                             f"are gone from the backends (pack {pid.hex()[:16]} from "
                             f"{', '.join(backends)}); it is older than a gc of the node that "
                             "made it: export it again there")


def cmd_import(args: argparse.Namespace, out: Output) -> int:
    """mosaic import FILE|-"""
    from ..store.transfer import import_
    data = read_input(args.file)
    with open_node(args) as node:
        _refuse_stale_dump(node, data)
        stats = import_(node.store, data)
        warning = save_index_copy(node)
    out.line(f"imported {stats['files']} files ({stats['new_files']} new, "
             f"{stats['new_chunks']} new chunk records, {stats['names']} names set)")
    return finish(out, stats, warning)


def cmd_warm(args: argparse.Namespace, out: Output) -> int:
    """mosaic warm REF...|--all"""
    from ..cloud.cache import warm
    with open_node(args) as node:
        fids = _fids(node, args.refs, args.all)
        with out.progress(_bytes_to_fetch(node, fids) if out.drawing else None, "warm") as bar:
            res = warm(node.cloud, None if fids is None else [f.hex() for f in fids], bar)
    out.line(f"{res['files']} files: cached {res['cached_before']:.1%} -> {res['cached_after']:.1%} "
             f"({res['packs_fetched']} packs, {format_size(res['bytes_fetched'])} fetched)")
    out.doc(res)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the upkeep verbs to the parser."""
    p = sub.add_parser("check", help="check the index's own consistency (fast; reads no packs)")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("verify", help="read back and check files")
    p.add_argument("refs", nargs="*", metavar="HASH|NAME", type=name_arg)
    p.add_argument("--all", action="store_true")
    p.add_argument("--backends", action="store_true", help="also fetch and check stored objects")
    p.add_argument("--sample", type=float, default=1.0, metavar="FRACTION",
                   help="with --backends: check this random share of objects")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("export", help="dump manifests as JSON")
    p.add_argument("refs", nargs="*", metavar="HASH|NAME", type=name_arg)
    p.add_argument("--all", action="store_true")
    p.add_argument("-o", "--output", metavar="FILE")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import", help="load a JSON manifest dump (all or nothing)")
    p.add_argument("file", metavar="FILE|-")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("warm", help="fetch files' chunks into the local store")
    p.add_argument("refs", nargs="*", metavar="HASH|NAME", type=name_arg)
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_warm)
