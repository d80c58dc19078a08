"""Sandbox: load the synthetic patient library into a FHIR server and call the service as an EHR would.

`iliac-cds sandbox load` PUTs every scenario's record into a FHIR R4 server as a transaction Bundle;
`iliac-cds sandbox run` then calls the CDS service for each patient with `fhirServer` only (no prefetch),
so the service fetches the record itself, and checks each scenario's expected cards (`expect.must`).

Scenario files (tests/scenarios/*.json) are complete CDS Hooks requests with prefetch; their resource ids
(`cond-1`, `obs-2`) repeat from one scenario to the next, so before loading, every resource other than the
Patient is renamed `{patientId}-{id}` and the references to it are rewritten. The same renamed request is
what `Scenario.request` holds, so prefetch and server always hold the same record.

Modules: `scenarios` (files, expectations, ids, Bundles), `client` (FHIR upload, hook requests, discovery),
`matching` (reading cards back, running one scenario), `cli` (the typer commands).
"""

from app.sandbox.cli import sandbox_app
from app.sandbox.client import (
    UploadResult,
    discover_services,
    fhir_authorization,
    fhir_headers,
    hook_request,
    upload_scenario,
)
from app.sandbox.matching import (
    RunResult,
    card_matches,
    card_rule,
    card_side,
    missing_expectations,
    run_scenario,
    suggestion_codes,
)
from app.sandbox.scenarios import (
    Expectation,
    SandboxError,
    Scenario,
    load_scenario,
    load_scenarios,
    namespace_ids,
    transaction_bundle,
)

__all__ = [
    "Expectation",
    "RunResult",
    "SandboxError",
    "Scenario",
    "UploadResult",
    "card_matches",
    "card_rule",
    "card_side",
    "discover_services",
    "fhir_authorization",
    "fhir_headers",
    "hook_request",
    "load_scenario",
    "load_scenarios",
    "missing_expectations",
    "namespace_ids",
    "run_scenario",
    "sandbox_app",
    "suggestion_codes",
    "transaction_bundle",
    "upload_scenario",
]
