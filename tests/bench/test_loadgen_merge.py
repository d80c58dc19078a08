"""Merging the interleaved slices of one benchmark point (bench/loadgen.py: merge)."""

from __future__ import annotations

from bench.loadgen import WrkResult, concurrent, merge


def result(requests: int, latency_ms: float, *, seconds: float = 1.0) -> WrkResult:
    """A slice whose every request took `latency_ms`."""
    return WrkResult(
        requests=requests,
        seconds=seconds,
        p50_ms=latency_ms,
        p90_ms=latency_ms,
        p99_ms=latency_ms,
        max_ms=latency_ms,
        errors=1,
        non_2xx=0,
        wrk_cpu_seconds=0.5,
        quantiles_ms=(latency_ms,) * 999,
    )


def test_counts_and_times_add_up() -> None:
    merged = merge([result(300, 2.0), result(100, 8.0, seconds=2.0)])
    assert (merged.requests, merged.seconds, merged.errors) == (400, 3.0, 2)
    assert merged.wrk_cpu_seconds == 1.0
    assert merged.rps == 400 / 3.0
    assert merged.max_ms == 8.0


def test_percentiles_weigh_each_slice_by_its_requests() -> None:
    # 300 requests at 2 ms and 100 at 8 ms: the median is 2 ms, p90 and p99 are 8 ms.
    merged = merge([result(300, 2.0), result(100, 8.0)])
    assert (merged.p50_ms, merged.p90_ms, merged.p99_ms) == (2.0, 8.0, 8.0)
    # The other way round the median moves to the larger slice.
    merged = merge([result(100, 2.0), result(300, 8.0)])
    assert (merged.p50_ms, merged.p90_ms) == (8.0, 8.0)
    assert merged.quantiles_ms[200] == 2.0


def test_one_slice_is_itself() -> None:
    only = result(10, 3.0)
    assert merge([only]) is only


def test_slices_without_requests_do_not_count() -> None:
    merged = merge([result(0, 50.0), result(10, 3.0)])
    assert (merged.requests, merged.p50_ms, merged.p99_ms) == (10, 3.0, 3.0)


def test_concurrent_runs_share_their_seconds() -> None:
    # Two servers loaded at once for the same 2 s: 600 requests in 2 s, not in 4.
    both = concurrent([result(400, 2.0, seconds=2.0), result(200, 8.0, seconds=2.0)])
    assert (both.requests, both.seconds) == (600, 2.0)
    assert both.rps == 300
    assert both.wrk_cpu_seconds == 1.0
    assert (both.p50_ms, both.p99_ms) == (2.0, 8.0)
    # Runs that ended a little apart: the longer one's time.
    assert (
        concurrent([result(1, 1.0, seconds=2.0), result(1, 1.0, seconds=2.1)]).seconds
        == 2.1
    )
