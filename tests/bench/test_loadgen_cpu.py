"""wrk's own CPU is counted per process (bench/loadgen.py: _run_counting_cpu), so runs at the same time do not
bill each other's CPU."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.loadgen import LIMIT_REACHED, _run_counting_cpu

BUSY = [
    sys.executable,
    "-c",
    "import time\nwhile time.process_time() < 0.3: pass\nprint('busy done')",
]
IDLE = [sys.executable, "-c", "import time; time.sleep(1.0); print('idle done')"]


def test_two_runs_at_once_count_only_their_own_cpu() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        idle = pool.submit(_run_counting_cpu, IDLE, timeout=30)
        busy = pool.submit(_run_counting_cpu, BUSY, timeout=30)
        (idle_out, _, idle_cpu), (busy_out, _, busy_cpu) = idle.result(), busy.result()

    assert (idle_out, busy_out) == ("idle done\n", "busy done\n")
    # The busy child ended (and was reaped) while the idle one slept: none of its CPU is the idle one's.
    assert busy_cpu >= 0.3
    assert idle_cpu < 0.2


def test_a_failed_run_raises_with_its_output() -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _run_counting_cpu(
            [sys.executable, "-c", "import sys; print('no'); sys.exit(3)"], timeout=30
        )
    assert failed.value.returncode == 3
    assert failed.value.output == "no\n"


def test_a_run_past_its_timeout_is_killed() -> None:
    with pytest.raises(subprocess.CalledProcessError) as killed:
        _run_counting_cpu(
            [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5
        )
    assert killed.value.returncode < 0


# Stands in for wrk at its request limit: prints the marker, then sleeps its duration unless SIGINT wakes it,
# and reports which of the two ended it (the handler raises: a handler that returns lets the sleep go on).
LIMITED = [
    sys.executable,
    "-c",
    "import signal, time\n"
    "class Woken(Exception): pass\n"
    "def wake(*_): raise Woken\n"
    "signal.signal(signal.SIGINT, wake)\n"
    "try:\n"
    "    print('WRK_LIMIT_REACHED', flush=True)\n"
    "    time.sleep(30)\n"
    "    print('slept its duration')\n"
    "except Woken:\n"
    "    print('interrupted')",
]


def test_the_limit_line_interrupts_the_run() -> None:
    # Within the timeout, which would kill the stand-in (and fail the run) long before its sleep ends.
    out, _, _ = _run_counting_cpu(LIMITED, timeout=10, interrupt_on=LIMIT_REACHED)
    assert out == "WRK_LIMIT_REACHED\ninterrupted\n"


def test_without_a_limit_line_nothing_is_interrupted() -> None:
    out, _, _ = _run_counting_cpu(
        [
            sys.executable,
            "-c",
            "import time; print('WRK_LIMIT_REACHED x'); time.sleep(0.3); print('end')",
        ],
        timeout=30,
        interrupt_on=LIMIT_REACHED,
    )
    assert out == "WRK_LIMIT_REACHED x\nend\n"
