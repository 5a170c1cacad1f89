"""The index's record types and byte codecs, without an index."""

from __future__ import annotations

from mosaic.node.store.records import (
    FOREIGN,
    PackRecord,
    decode_chunk_table,
    decode_pack_record,
    encode_chunk_table,
    encode_row,
)


def test_chunk_table_encoding_round_trips() -> None:
    a, b = bytes([1]) * 32, bytes([2]) * 32
    table = ((a, 5), (b, 1 << 20), (a, 5))
    blob = encode_chunk_table(table)
    assert len(blob) == 3 * 36 and decode_chunk_table(blob) == table


def test_a_pack_row_without_an_owner_decodes_to_none() -> None:
    old = decode_pack_record(encode_row([7, 100, 3, True, ["s3"], 5]))
    assert old == PackRecord(100, 3, True, ("s3",), 5, None)
    assert decode_pack_record(encode_row([7, 100, 3, False, [], 5, FOREIGN])).owner == FOREIGN
