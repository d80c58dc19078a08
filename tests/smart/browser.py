"""Headless Chromium for the browser tests: Debian's `chromium` package, installed here when missing.

Never a downloaded browser: Playwright drives /usr/bin/chromium through `executable_path`. When Chromium is
missing and cannot be installed (not root, no apt), the tests FAIL with the command to run; they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from app.config import REPO_ROOT

CHROMIUM = Path(os.environ.get("ILIAC_CDS_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
INSTALL_TIMEOUT_SECONDS = 900


def ensure_chromium() -> Path:
    """Return the Chromium executable, running `apt-get install -y chromium` first when it is missing."""
    if CHROMIUM.is_file():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.fail(
            f"{CHROMIUM} is missing and cannot be installed here; run "
            "`sudo apt-get update && sudo apt-get install -y chromium`",
            pytrace=False,
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(
            command,
            env=env,
            capture_output=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.decode(errors='replace')[-800:]}",
                pytrace=False,
            )
    if not CHROMIUM.is_file():
        pytest.fail(
            f"chromium was installed but {CHROMIUM} does not exist", pytrace=False
        )
    return CHROMIUM


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
