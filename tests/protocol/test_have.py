"""HaveRecord: which node holds which file complete, replicated like the other records."""

from __future__ import annotations

import msgpack
import pytest

from mosaic.protocol.errors import BadMessage
from mosaic.protocol.messages import Records, decode_message, encode_message
from mosaic.protocol.records import HaveRecord, LogEntry, entry_from_wire, entry_to_wire

FID = bytes(range(32))
ORIGIN = bytes(32)


def _roundtrip(entry: LogEntry) -> LogEntry:
    wire = msgpack.unpackb(msgpack.packb(entry_to_wire(entry), use_bin_type=True), use_list=False)
    return entry_from_wire(wire)


@pytest.mark.parametrize("complete", [True, False])
def test_have_round_trip(complete: bool) -> None:
    e = LogEntry(7, HaveRecord(FID, complete), bytes(64))
    assert _roundtrip(e) == e._replace(sig=b"")  # the body: the signature is beside it
    msg = Records(ORIGIN, (e,), False)
    assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize("wire", [
    (1, 3, FID),                    # missing field
    (1, 3, FID, True, 1),           # extra field
    (1, 3, FID[:31], True),         # short id
    (1, 3, FID, 1),                 # int, not bool
    (1, 3, "x" * 32, True),         # text id
])
def test_bad_have_entries_are_refused(wire: tuple) -> None:
    with pytest.raises(BadMessage):
        entry_from_wire(wire)
