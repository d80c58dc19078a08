"""Same answer from every data path: full, none, partial and null prefetch give the same cards for every patient."""

from __future__ import annotations

import pytest

from app.sandbox import Scenario
from tests.fixtures.app import FIXED_NOW, AppFactory
from tests.integration.conftest import FhirServer, scenario_library
from tests.integration.paths import (
    DATA_PATHS,
    request_for,
    service_path,
    signatures,
)

pytestmark = pytest.mark.integration
SCENARIO_IDS = [s.id for s in scenario_library()]


@pytest.mark.parametrize("scenario_id", SCENARIO_IDS)
async def test_every_data_path_gives_the_same_cards(
    scenario_id: str,
    fhir_server: FhirServer,
    loaded_scenarios: dict[str, Scenario],
    app_factory: AppFactory,
) -> None:
    scenario = loaded_scenarios[scenario_id]
    api = await app_factory(now=scenario.now or FIXED_NOW)
    answers = {}
    for data_path in DATA_PATHS:
        body = request_for(
            scenario,
            data_path,
            fhir_server=fhir_server.base_url,
            token=fhir_server.token,
        )
        response = await api.post(service_path(scenario), json=body)
        assert response.status_code == 200, (data_path, response.text)
        answers[data_path] = signatures(response.json()["cards"])
    reference = answers["full-prefetch"]
    differing = {path: cards for path, cards in answers.items() if cards != reference}
    assert not differing, {"full-prefetch": reference, **differing}
