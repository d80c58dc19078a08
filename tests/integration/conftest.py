"""A real FHIR server for the integration tests: sekmet-fhir from .venv-fhir, on loopback, bearer-token auth.

scripts/fhir-server-venv.sh creates .venv-fhir (ILIAC_CDS_TEST_FHIR_VENV overrides where it is). Without it the
tests are skipped locally and fail when CI=true.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.config import REPO_ROOT
from app.db.migrate import upgrade_database
from app.sandbox import Scenario, load_scenarios, upload_scenario
from tests.fixtures.database import DatabaseTarget, run_outside_loop

FHIR_VENV_ENV = "ILIAC_CDS_TEST_FHIR_VENV"
DEFAULT_FHIR_VENV = REPO_ROOT / ".venv-fhir"
DATA_DIR = Path(__file__).parent / "data"
SCENARIOS_DIR = REPO_ROOT / "tests" / "scenarios"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class FhirServer:
    """The running test server: its FHIR base URL and the one bearer token it accepts."""

    base_url: str
    token: str

    def client(self, *, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Accept": "application/fhir+json",
            },
            timeout=30.0,
            trust_env=False,
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_executable() -> Path:
    venv = Path(os.environ.get(FHIR_VENV_ENV) or DEFAULT_FHIR_VENV)
    executable = venv / "bin" / "sekmet"
    if executable.is_file():
        return executable
    reason = (
        f"the FHIR test server is not installed ({executable} missing); "
        f"run scripts/fhir-server-venv.sh or set {FHIR_VENV_ENV}"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must run the integration tests", pytrace=False)
    pytest.skip(reason)


def _config(root: Path, port: int, token: str) -> str:
    # JSON is YAML; the simulator must stay off, or it fulfils every ServiceRequest it sees.
    return f"""{{
  "base_url": "http://127.0.0.1:{port}/fhir",
  "host": "127.0.0.1",
  "port": {port},
  "data_dir": "{root / "data"}",
  "db_path": "{root / "fhir.db"}",
  "own_private_key_path": "{root / "keys" / "sekmet.pem"}",
  "server_auth": {{"types": ["bearer"], "tokens": ["{token}"]}},
  "simulator": {{"enabled": false}},
  "log_inbound": false
}}
"""


def _log_tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def _wait_until_up(
    process: subprocess.Popen[bytes], base_url: str, log_path: Path
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(
                    f"the FHIR test server exited with {process.returncode}:\n{_log_tail(log_path)}",
                    pytrace=False,
                )
            try:
                if client.get(f"{base_url}/metadata").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    pytest.fail(
        f"the FHIR test server did not answer {base_url}/metadata within "
        f"{STARTUP_TIMEOUT_SECONDS:g} s:\n{_log_tail(log_path)}",
        pytrace=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """sekmet-fhir on a free loopback port with a temporary SQLite file, started once per test session."""
    executable = _server_executable()
    root = tmp_path_factory.mktemp("fhir-server")
    port = free_port()
    token = f"test-{secrets.token_urlsafe(16)}"
    config = root / "settings.yaml"
    config.write_text(_config(root, port, token))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    env["SEKMET_CONFIG"] = str(config)
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(executable),
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        base_url = f"http://127.0.0.1:{port}/fhir"
        _wait_until_up(process, base_url, log_path)
        yield FhirServer(base_url=base_url, token=token)
    finally:
        _stop(process)


def scenario_library() -> list[Scenario]:
    """The scenario library (tests/scenarios) when present, plus the integration tests' own patients."""
    scenarios = load_scenarios(DATA_DIR)
    if SCENARIOS_DIR.is_dir() and any(SCENARIOS_DIR.glob("*.json")):
        scenarios = load_scenarios(SCENARIOS_DIR) + scenarios
    return scenarios


@pytest.fixture(scope="session")
def loaded_scenarios(fhir_server: FhirServer) -> dict[str, Scenario]:
    """Every scenario's record PUT into the server once per session, by scenario id."""
    scenarios = scenario_library()
    with fhir_server.client() as client:
        for scenario in scenarios:
            upload_scenario(client, fhir_server.base_url, scenario, fhir_server.token)
    return {s.id: s for s in scenarios}


@pytest.fixture(scope="session")
def database_target(tmp_path_factory: pytest.TempPathFactory) -> DatabaseTarget:
    """SQLite only: these tests are about FHIR, and the db tests already cover PostgreSQL."""
    path = tmp_path_factory.mktemp("db") / "iliac-cds-integration.db"
    target = DatabaseTarget(backend="sqlite", url=f"sqlite+aiosqlite:///{path}")
    run_outside_loop(lambda: upgrade_database(target.url))
    return target
