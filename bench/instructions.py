"""Instructions per hook call, counted by valgrind's callgrind (`python -m bench.instructions`).

This VM's speed drifts over minutes with no steal showing (bench/README.md), so CPU milliseconds measured at
different times do not compare; counted instructions do. Each workload runs twice under callgrind in a fresh
interpreter: the service is imported, started (lifespan: catalogue, audit writer, HTTP client) and warmed with
a few calls, then makes 0 or `--calls` more calls; the difference over `--calls` is one call's instructions.
The calls go through the whole ASGI app (middleware, routing, decoding, rules, audit commit) over httpx's
ASGI transport, so uvicorn's HTTP parsing and the kernel's work (sockets, fsync) are not counted.

About 1-2 minutes per workload (valgrind runs the interpreter about 50x slower).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import orjson

from bench import workloads
from bench.workloads import Body

WARM_CALLS = 3
WORKLOADS: dict[str, Callable[[], Body]] = {
    "patient-view-150k": workloads.patient_view,
    "order-sign-stent-ivus": workloads.order_sign,
    "patient-view-500": lambda: workloads.large(500),
    "patient-view-2000": lambda: workloads.large(2000),
}
_REFS = re.compile(r"Collected\s*:\s*(\d+)")


async def _calls(name: str, calls: int) -> None:
    """Runs inside valgrind: start the app, warm it, then make `calls` calls; every answer must be 200."""
    import httpx

    from app.main import create_app

    body = WORKLOADS[name]()
    raw = orjson.dumps(body.body)
    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1"
        ) as client:
            for _ in range(WARM_CALLS + calls):
                response = await client.post(
                    f"/cds-services/{body.service_id}",
                    content=raw,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code != 200:
                    raise SystemExit(f"{name}: answered {response.status_code}")


def _child_env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ILIAC_CDS_AUTH_MODE": "disabled",
        "ILIAC_CDS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "ILIAC_CDS_NOW": workloads.EPOCH.isoformat(),
        "ILIAC_CDS_LOG_LEVEL": "WARNING",
        "PYTHONHASHSEED": "0",
    }


def count(name: str, calls: int, workdir: Path) -> int:
    """Instructions of one fresh interpreter that starts the app and makes WARM_CALLS + `calls` calls."""
    from app.db.migrate import upgrade_database

    db = workdir / "bench.db"
    db.unlink(missing_ok=True)
    upgrade_database(f"sqlite+aiosqlite:///{db}")
    out = workdir / "callgrind.out"
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, "-m", "bench.instructions", "--child", name, "--calls", str(calls),
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env=_child_env(workdir),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    match = _REFS.search(result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(
            f"callgrind run for {name} failed ({result.returncode}):\n{result.stderr[-2000:]}"
        )
    return int(match.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=10, help="measured calls per workload"
    )
    parser.add_argument(
        "--workload",
        action="append",
        choices=sorted(WORKLOADS),
        help="repeatable; default: all",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_calls(args.child, args.calls))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    names = args.workload or list(WORKLOADS)
    with tempfile.TemporaryDirectory(prefix="iliac-instr-") as tmp:
        workdir = Path(tmp)
        print(f"| workload | instructions per call (callgrind, {args.calls} calls) |")  # noqa: T201
        print("|---|---|")  # noqa: T201
        for name in names:
            base = count(name, 0, workdir)
            total = count(name, args.calls, workdir)
            print(f"| {name} | {(total - base) / args.calls:,.0f} |", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
