"""Hypothesis strategies for valid protocol values."""

from __future__ import annotations

from hypothesis import strategies as st

from mosaic.protocol.limits import MAX_UINT
from mosaic.protocol.messages import (
    Bye,
    ChunkData,
    ChunkMissing,
    Hello,
    Ping,
    Pong,
    Pull,
    Records,
    Summary,
    WantChunks,
)
from mosaic.protocol.records import (
    ChunkLocation,
    LogEntry,
    ManifestRecord,
    NameRecord,
    Version,
    VersionRef,
)

ids = st.binary(min_size=32, max_size=32)
uints = st.integers(min_value=0, max_value=MAX_UINT)
hlcs = st.integers(min_value=2, max_value=MAX_UINT)
backend = st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True)
name_part = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"), min_size=1,
    max_size=8,
).filter(lambda p: p not in (".", ".."))
names = st.lists(name_part, min_size=1, max_size=3).map("/".join)


@st.composite
def manifests(draw: st.DrawFn) -> ManifestRecord:
    chunks = draw(st.lists(st.tuples(ids, st.integers(1, (1 << 32) - 1)), max_size=5))
    locs = []
    for cid, n in chunks:
        if draw(st.booleans()):
            locs.append(ChunkLocation(cid, draw(ids), draw(uints), n,
                                      tuple(draw(st.lists(backend, max_size=3)))))
    return ManifestRecord(draw(ids), sum(n for _, n in chunks), draw(uints), tuple(chunks),
                          tuple(locs))


@st.composite
def versions(draw: st.DrawFn, origin: bytes | None = None) -> Version:
    hlc = draw(hlcs)
    refs = st.builds(VersionRef, st.integers(1, hlc - 1), ids)
    base = draw(st.none() | refs)
    resolves = sorted(set(draw(st.lists(refs, max_size=3))) - {base})
    return Version(hlc, origin if origin is not None else draw(ids), base, tuple(resolves))


@st.composite
def name_records(draw: st.DrawFn, origin: bytes | None = None) -> NameRecord:
    return NameRecord(draw(names), draw(st.none() | ids), draw(versions(origin)))


@st.composite
def records_msgs(draw: st.DrawFn) -> Records:
    origin = draw(ids)
    first = draw(st.integers(1, 1 << 40))
    recs = draw(st.lists(manifests() | name_records(origin), max_size=4))
    entries = tuple(LogEntry(first + i, r, bytes(64)) for i, r in enumerate(recs))
    return Records(origin, entries, bool(entries) and draw(st.booleans()))


@st.composite
def summaries(draw: st.DrawFn) -> Summary:
    vec = draw(st.dictionaries(ids, st.integers(1, MAX_UINT), max_size=5))
    return Summary.from_mapping(vec)


capability = st.from_regex(r"[a-z0-9._\-]{1,10}", fullmatch=True)

messages = st.one_of(
    st.builds(Hello, st.integers(0, 0xFFFF), ids,
              st.lists(capability, unique=True, max_size=4).map(tuple), st.text(max_size=20)),
    summaries(),
    records_msgs(),
    st.builds(Pull, ids, uints),
    st.builds(WantChunks, uints, st.lists(ids, min_size=1, max_size=5, unique=True).map(tuple)),
    st.builds(ChunkData, uints, ids, st.binary(max_size=100)),
    st.builds(ChunkMissing, uints, ids),
    st.builds(Ping, uints),
    st.builds(Pong, uints),
    st.builds(Bye, st.text(max_size=50)),
)
