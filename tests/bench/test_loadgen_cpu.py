"""wrk's own CPU is counted per process (bench/loadgen.py: _run_counting_cpu), so runs at the same time do not
bill each other's CPU."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.loadgen import _run_counting_cpu

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
