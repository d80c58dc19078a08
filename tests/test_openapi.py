"""openapi/openapi.json is what the app serves: regenerate it with `iliac-cds export-openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from app.config import AuthMode, Settings
from app.main import create_app

OPENAPI = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    served = create_app(Settings(_env_file=None, auth_mode=AuthMode.DISABLED)).openapi()
    committed = json.loads(OPENAPI.read_text())
    assert json.loads(json.dumps(served)) == committed, (
        "openapi drifted: run `iliac-cds export-openapi`"
    )


def test_openapi_documents_the_cds_endpoints_and_their_errors() -> None:
    document = json.loads(OPENAPI.read_text())
    invoke = document["paths"]["/cds-services/{service_id}"]["post"]
    assert {"200", "400", "401", "403", "404", "412", "413", "422"} <= set(
        invoke["responses"]
    )
    assert "/cds-services/{service_id}/feedback" in document["paths"]
    assert "/cds-services" in document["paths"]
