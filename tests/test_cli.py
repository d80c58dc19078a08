"""The iliac-cds command line: check, export-openapi, migrate, clients add/list/remove."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey
from typer.testing import CliRunner

from app.cli import app
from app.config import get_settings

runner = CliRunner()
OPENAPI = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(
        "ILIAC_CDS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    )
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_check_prints_what_was_loaded() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "cards" in result.output.lower()


def test_check_names_a_broken_card_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    for source in (Path(__file__).resolve().parents[1] / "cards").glob("*.yaml"):
        (cards / source.name).write_text(source.read_text())
    broken = sorted(cards.glob("R0*.yaml"))[0]
    broken.write_text("rule: [unterminated\n")
    monkeypatch.setenv("ILIAC_CDS_CARDS_DIR", str(cards))
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["check"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert broken.name in result.output


def test_export_openapi_writes_the_committed_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = runner.invoke(app, ["export-openapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == json.loads(OPENAPI.read_text())


def test_clients_add_list_remove(sqlite_env: Path) -> None:
    jwks = sqlite_env / "jwks.json"
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"})
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = runner.invoke(
        app,
        [
            "clients",
            "add",
            "--issuer",
            "https://ehr.example.org",
            "--jwks-file",
            str(jwks),
            "--fhir-server",
            "https://ehr.example.org/fhir",
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["clients", "list", "--json"])
    assert json.loads(listed.output) == [
        {
            "issuer": "https://ehr.example.org",
            "jwksUrl": None,
            "fhirServers": ["https://ehr.example.org/fhir"],
            "jkuAllowlist": [],
            "tenant": None,
        }
    ]
    removed = runner.invoke(app, ["clients", "remove", "https://ehr.example.org"])
    assert removed.exit_code == 0, removed.output
    again = runner.invoke(app, ["clients", "remove", "https://ehr.example.org"])
    assert again.exit_code == 1


@pytest.mark.usefixtures("sqlite_env")
def test_clients_add_refuses_plain_http_keys() -> None:
    result = runner.invoke(
        app,
        [
            "clients",
            "add",
            "--issuer",
            "x",
            "--jwks-url",
            "http://keys.example.org/jwks",
        ],
    )
    assert result.exit_code == 1
    assert "https" in result.output


def test_migrate(sqlite_env: Path) -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert (sqlite_env / "cli.db").exists()
