"""Hybrid logical clock: monotonic, causal, bounded by the wall clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.protocol import hlc

ms = st.integers(min_value=0, max_value=1 << 46)
stamps = st.builds(hlc.make, ms, st.integers(0, 0xFFFF))


def test_layout() -> None:
    ts = hlc.make(1_700_000_000_000, 5)
    assert ts == 1_700_000_000_000 << 16 | 5
    assert (hlc.physical_ms(ts), hlc.counter(ts)) == (1_700_000_000_000, 5)


def test_tick_uses_wall_clock_when_it_moves() -> None:
    assert hlc.tick(hlc.make(10, 7), 20) == hlc.make(20, 0)


def test_tick_counts_when_clock_stalls_or_goes_back() -> None:
    last = hlc.make(20, 3)
    assert hlc.tick(last, 20) == hlc.make(20, 4)
    assert hlc.tick(last, 5) == hlc.make(20, 4)


def test_counter_overflow_borrows_a_millisecond() -> None:
    assert hlc.tick(hlc.make(20, 0xFFFF), 20) == hlc.make(21, 0)


def test_receive_cases() -> None:
    assert hlc.receive(hlc.make(10, 1), hlc.make(30, 4), 20) == hlc.make(30, 5)
    assert hlc.receive(hlc.make(30, 9), hlc.make(30, 4), 20) == hlc.make(30, 10)
    assert hlc.receive(hlc.make(30, 9), hlc.make(10, 4), 20) == hlc.make(30, 10)
    assert hlc.receive(hlc.make(10, 9), hlc.make(10, 4), 40) == hlc.make(40, 0)


def test_rejects_negative() -> None:
    with pytest.raises(ValueError):
        hlc.tick(-1, 0)
    with pytest.raises(ValueError):
        hlc.receive(0, 0, -5)
    with pytest.raises(ValueError):
        hlc.make(1 << 47)


@settings(max_examples=300, deadline=None)
@given(last=stamps, remote=stamps, now=ms)
def test_properties(last: int, remote: int, now: int) -> None:
    t = hlc.tick(last, now)
    assert t > last
    assert hlc.physical_ms(t) >= now
    r = hlc.receive(last, remote, now)
    assert r > last and r > remote
    assert hlc.physical_ms(r) >= now
    # Never further ahead of max(inputs) than the counter overflow allows.
    assert hlc.physical_ms(r) <= max(hlc.physical_ms(last), hlc.physical_ms(remote), now) + 1


@settings(max_examples=100, deadline=None)
@given(st.lists(ms, min_size=1, max_size=50))
def test_sequence_strictly_increases(clock: list[int]) -> None:
    last = 0
    for now in clock:
        nxt = hlc.tick(last, now)
        assert nxt > last
        last = nxt
