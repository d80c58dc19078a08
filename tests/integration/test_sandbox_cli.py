"""`iliac-cds sandbox load | run` against the real FHIR server and the service served by uvicorn on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from app.main import create_app
from app.sandbox import load_scenarios, sandbox_app
from tests.fixtures.app import SettingsFactory
from tests.integration.conftest import DATA_DIR, FhirServer

pytestmark = pytest.mark.integration
runner = CliRunner()
STARTUP_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def service_url(settings_factory: SettingsFactory) -> Iterator[str]:
    """The service (auth disabled, loopback, SQLite) served by uvicorn in a thread on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings_factory(public_base_url=base, bind_host="127.0.0.1"))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True
    )
    thread.start()
    started = threading.Event()
    for _ in range(int(STARTUP_TIMEOUT_SECONDS * 10)):
        if server.started or not thread.is_alive():
            break
        started.wait(0.1)
    try:
        assert server.started, "uvicorn did not start the service"
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        sock.close()


def write_scenario(directory: Path, source: Path, **expect: object) -> Path:
    document = json.loads(source.read_text())
    document["expect"] = {"must": [], "mustNot": [], **expect}
    target = directory / source.name
    target.write_text(json.dumps(document))
    return target


class TestLoad:
    def test_load_twice_creates_then_updates_and_never_duplicates(
        self, fhir_server: FhirServer
    ) -> None:
        args = ["load", "--fhir-server", fhir_server.base_url]
        args += ["--token", fhir_server.token, "--scenarios", str(DATA_DIR)]
        first = runner.invoke(sandbox_app, args)
        second = runner.invoke(sandbox_app, args)
        assert first.exit_code == 0, first.output
        assert second.exit_code == 0, second.output
        assert "0 resource(s) created" in second.output
        scenario = next(
            s for s in load_scenarios(DATA_DIR) if s.id == "int-paged-observations"
        )
        expected = len(scenario.resources_by_key()["observations"])
        with fhir_server.client() as client:
            bundle = client.get(
                f"{fhir_server.base_url}/Observation",
                params={"patient": scenario.patient_id, "_summary": "count"},
            ).json()
        assert bundle["total"] == expected

    def test_refused_token_fails_with_the_status(self, fhir_server: FhirServer) -> None:
        result = runner.invoke(
            sandbox_app,
            [
                *("load", "--fhir-server", fhir_server.base_url),
                *("--token", "wrong", "--scenarios", str(DATA_DIR)),
            ],
        )
        assert result.exit_code == 1
        assert "HTTP 401" in result.output


class TestRun:
    def test_every_patient_gets_its_cards_without_prefetch(
        self, fhir_server: FhirServer, service_url: str, tmp_path: Path
    ) -> None:
        for source in DATA_DIR.glob("*.json"):
            write_scenario(tmp_path, source)
        common = ["--fhir-server", fhir_server.base_url, "--token", fhir_server.token]
        common += ["--scenarios", str(tmp_path)]
        assert runner.invoke(sandbox_app, ["load", *common]).exit_code == 0
        result = runner.invoke(sandbox_app, ["run", *common, "--service", service_url])
        assert result.exit_code == 0, result.output
        assert "2 of 2 patient(s) got every expected card" in result.output

    def test_missing_expected_card_exits_non_zero_naming_it(
        self, fhir_server: FhirServer, service_url: str, tmp_path: Path
    ) -> None:
        source = DATA_DIR / "int-paged-observations.json"
        write_scenario(tmp_path, source, must=[{"rule": "NO-SUCH-RULE"}])
        shutil.copy(DATA_DIR / "int-order-sign-draft-orders.json", tmp_path)
        common = ["--fhir-server", fhir_server.base_url, "--token", fhir_server.token]
        common += ["--scenarios", str(tmp_path)]
        assert runner.invoke(sandbox_app, ["load", *common]).exit_code == 0
        result = runner.invoke(
            sandbox_app,
            ["run", *common, "--service", service_url, "--hook", "patient-view"],
        )
        assert result.exit_code == 1, result.output
        assert "NO-SUCH-RULE" in result.output
        assert "0 of 1 patient(s)" in result.output

    def test_refused_token_is_reported_per_patient(
        self, fhir_server: FhirServer, service_url: str
    ) -> None:
        result = runner.invoke(
            sandbox_app,
            [
                *("run", "--fhir-server", fhir_server.base_url, "--token", "wrong"),
                *("--service", service_url, "--scenarios", str(DATA_DIR)),
                *("--patient", "int-pt-paged"),
            ],
        )
        assert result.exit_code == 1
        assert "HTTP 412" in result.output
