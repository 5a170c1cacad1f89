"""Hybrid logical clock (Kulkarni et al., 2014) as pure functions over ints.

A timestamp is one int: `physical_ms << 16 | counter`. Ordering the ints orders
the timestamps. `tick` stamps a local event, `receive` folds in a timestamp
seen from elsewhere; both return a value strictly greater than every input
timestamp, so a write stamped after reading a version always sorts after it.
The node persists the last value it returned and passes it back in.

If the 16-bit counter would overflow, the physical part is advanced by 1 ms
instead (the clock runs ahead of the wall clock by at most that much).

The clock never raises on a large input: at 2**63 - 1 it *saturates* (returns
MAX_UINT again). Remote timestamps are bounded before they are folded in:
`too_far_ahead` tells a receiver to refuse a timestamp more than
MAX_CLOCK_SKEW_MS ahead of its wall clock, so saturation needs a local clock
set ~292 million years ahead and is only a last line of defence.
"""

from __future__ import annotations

from .limits import MAX_CLOCK_SKEW_MS, MAX_UINT

__all__ = ["COUNTER_BITS", "counter", "make", "physical_ms", "receive", "tick", "too_far_ahead"]

COUNTER_BITS = 16
_COUNTER_MAX = (1 << COUNTER_BITS) - 1


def make(physical: int, count: int = 0) -> int:
    """Pack a physical time (ms since the epoch) and a counter into one timestamp."""
    if not 0 <= count <= _COUNTER_MAX or physical < 0:
        raise ValueError("physical must be >= 0 and counter fit 16 bits")
    value = physical << COUNTER_BITS | count
    if value > MAX_UINT:
        raise ValueError("HLC beyond 2**63")
    return value


def physical_ms(ts: int) -> int:
    """Milliseconds since the epoch of a timestamp."""
    return ts >> COUNTER_BITS


def counter(ts: int) -> int:
    """Logical counter of a timestamp."""
    return ts & _COUNTER_MAX


def _bump(phys: int, count: int) -> int:
    if count > _COUNTER_MAX:
        phys, count = phys + 1, 0
    value = phys << COUNTER_BITS | count
    return value if value <= MAX_UINT else MAX_UINT  # saturate, never raise


def too_far_ahead(ts: int, now_ms: int, skew_ms: int = MAX_CLOCK_SKEW_MS) -> bool:
    """True if `ts` is more than `skew_ms` ahead of the wall clock `now_ms` (refuse it)."""
    return physical_ms(ts) > now_ms + skew_ms


def tick(last: int, now_ms: int) -> int:
    """Timestamp for a local event, given the last timestamp issued and the wall clock."""
    if last < 0 or now_ms < 0:
        raise ValueError("timestamps must be >= 0")
    lp = physical_ms(last)
    if now_ms > lp:
        return make(now_ms, 0)
    return _bump(lp, counter(last) + 1)


def receive(last: int, remote: int, now_ms: int) -> int:
    """Timestamp after seeing `remote`: greater than both `last` and `remote`."""
    if last < 0 or remote < 0 or now_ms < 0:
        raise ValueError("timestamps must be >= 0")
    lp, rp = physical_ms(last), physical_ms(remote)
    phys = max(lp, rp, now_ms)
    if phys == lp == rp:
        count = max(counter(last), counter(remote)) + 1
    elif phys == lp:
        count = counter(last) + 1
    elif phys == rp:
        count = counter(remote) + 1
    else:
        count = 0
    return _bump(phys, count)
