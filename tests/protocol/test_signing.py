"""Signed, hash-chained logs (protocol/signing.py) and the bounded clock (protocol/hlc.py)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mosaic.node.cluster.identity import _make_cert, _raw_public
from mosaic.protocol import hlc
from mosaic.protocol.limits import MAX_CLOCK_SKEW_MS, MAX_UINT
from mosaic.protocol.records import HaveRecord, LogEntry, MemberRecord, NameRecord, Version
from mosaic.protocol.signing import (
    GENESIS,
    LogHead,
    admit_page,
    cert_node_key,
    sign_entry,
)

NOW = 1_800_000_000_000
KEY = Ed25519PrivateKey.generate()
ORIGIN = hashlib.sha256(_make_cert(KEY)).digest()
PUB = _raw_public(KEY)
ME = bytes(32)
FID = bytes(range(32))


def _log(n: int, origin: bytes = ORIGIN) -> tuple[list[LogEntry], list[LogHead]]:
    entries, heads, h = [], [GENESIS], GENESIS
    for i in range(n):
        rec = NameRecord(f"n/{i}", FID, Version(hlc.make(NOW) + i, origin)) if i % 2 else \
            HaveRecord(FID, bool(i % 3))
        e, h = sign_entry(KEY.sign, origin, h, i + 1, rec)
        entries.append(e)
        heads.append(h)
    return entries, heads


def _keys(o: bytes) -> bytes | None:
    return PUB if o == ORIGIN else None


def test_every_page_of_a_signed_log_is_admitted() -> None:
    entries, heads = _log(8)
    for start in range(8):
        for end in range(start + 1, 9):
            got, rej = admit_page(ME, ORIGIN, entries[start:end], heads[start], _keys, NOW)
            assert rej is None and got == heads[start + 1:end + 1]


@pytest.mark.parametrize("where", range(5))
def test_any_change_in_a_page_is_refused(where: int) -> None:
    entries, _ = _log(5)
    e = entries[where]
    bad_sig = e._replace(sig=bytes(64))
    for forged in (bad_sig, e._replace(record=HaveRecord(bytes(32), True))):
        page = entries[:where] + [forged] + entries[where + 1:]
        got, rej = admit_page(ME, ORIGIN, page, GENESIS, _keys, NOW)
        assert got == [] and rej is not None and rej.seq == 1 and not rej.retry


def test_a_page_on_another_head_or_origin_is_refused() -> None:
    entries, heads = _log(4)
    assert admit_page(ME, ORIGIN, entries[2:], heads[1], _keys, NOW)[1] is not None
    other = bytes([1]) * 32
    got, rej = admit_page(ME, other, entries, GENESIS, lambda o: PUB, NOW)
    assert got == [] and rej is not None  # signed for ORIGIN, not `other`


def test_own_origin_and_unknown_signers() -> None:
    entries, _ = _log(2)
    _, rej = admit_page(ORIGIN, ORIGIN, entries, GENESIS, _keys, NOW)
    assert rej is not None and "own origin" in rej.reason and not rej.retry
    _, rej = admit_page(ME, ORIGIN, entries, GENESIS, lambda o: None, NOW)
    assert rej is not None and rej.retry


def test_clock_too_far_ahead_keeps_the_prefix() -> None:
    entries, heads = _log(2)
    far = NameRecord("far", FID, Version(hlc.make(NOW + MAX_CLOCK_SKEW_MS + 1), ORIGIN))
    e3, _ = sign_entry(KEY.sign, ORIGIN, heads[2], 3, far)
    got, rej = admit_page(ME, ORIGIN, [*entries, e3], GENESIS, _keys, NOW)
    assert got == heads[1:3] and rej is not None and rej.seq == 3 and "ahead" in rej.reason
    ok = NameRecord("ok", FID, Version(hlc.make(NOW + MAX_CLOCK_SKEW_MS), ORIGIN))
    e3, _ = sign_entry(KEY.sign, ORIGIN, heads[2], 3, ok)
    assert admit_page(ME, ORIGIN, [*entries, e3], GENESIS, _keys, NOW)[1] is None


def test_member_records() -> None:
    cert = _make_cert(KEY)
    assert cert_node_key(cert) == (ORIGIN, PUB)
    with pytest.raises(ValueError):
        cert_node_key(b"not a certificate")
    e, _ = sign_entry(KEY.sign, ORIGIN, GENESIS, 1, MemberRecord(b"\x30\x03junk"))
    _, rej = admit_page(ME, ORIGIN, [e], GENESIS, _keys, NOW)
    assert rej is not None and "member record" in rej.reason


def test_clock_saturates_instead_of_raising() -> None:
    assert hlc.tick(MAX_UINT, NOW) == MAX_UINT
    assert hlc.receive(0, MAX_UINT, NOW) == MAX_UINT
    assert hlc.receive(MAX_UINT, MAX_UINT, NOW) == MAX_UINT
    assert hlc.too_far_ahead(MAX_UINT, NOW)
    assert not hlc.too_far_ahead(hlc.make(NOW + MAX_CLOCK_SKEW_MS), NOW)
    assert hlc.too_far_ahead(hlc.make(NOW + MAX_CLOCK_SKEW_MS + 1), NOW)
