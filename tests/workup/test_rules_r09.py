"""R09: venography + IVUS before iliac vein stenting."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    SCT,
    Card,
    cards_of,
    component,
    condition,
    day,
    device_request,
    imaging_study,
    observation,
    procedure,
    run,
    service_request,
    side_of,
    stent_order,
)

SYMPTOMS = condition("R22.42", onset=day(200))


def _r09(*resources: JsonObject, drafts: tuple[JsonObject, ...]) -> list[Card]:
    return cards_of(run(*resources, hook="order-sign", drafts=drafts), "R09")


class TestR09:
    def test_stent_without_ivus_is_critical(self) -> None:
        result = run(
            SYMPTOMS,
            hook="order-sign",
            drafts=(stent_order("left", id="s1"), device_request("ServiceRequest/s1")),
        )
        (card,) = cards_of(result, "R09")
        assert card["indicator"] == "critical"
        assert (
            card["summary"]
            == "IVUS required before iliac vein stenting: add venography with IVUS for the left iliac veins."
        )
        assert side_of(result, card) == "left"
        actions = card["suggestions"][0]["actions"]
        codes = [a["resource"]["code"]["coding"][0]["code"] for a in actions]
        assert codes == ["37252", "75820"]
        ivus = actions[0]["resource"]
        assert [s["coding"][0]["code"] for s in ivus["bodySite"]] == [
            "46027005",
            "63507001",
        ]
        assert (
            ivus["bodySite"][0]["extension"][0]["valueCodeableConcept"]["coding"][0][
                "code"
            ]
            == "7771000"
        )

    def test_ivus_procedure_90_days_old_passes(self) -> None:
        assert (
            _r09(
                procedure("37252", side="left", date=day(90)),
                drafts=(stent_order("left"),),
            )
            == []
        )

    def test_ivus_91_days_old_fires(self) -> None:
        assert (
            len(
                _r09(
                    procedure("37252", side="left", date=day(91)),
                    drafts=(stent_order("left"),),
                )
            )
            == 1
        )

    def test_contralateral_ivus_does_not_count(self) -> None:
        assert (
            len(
                _r09(
                    procedure("37252", side="right", date=day(5)),
                    drafts=(stent_order("left"),),
                )
            )
            == 1
        )

    def test_ivus_imaging_study_counts(self) -> None:
        assert (
            _r09(
                imaging_study("IVUS", laterality="left", started=day(5)),
                drafts=(stent_order("left"),),
            )
            == []
        )

    def test_ivus_measurement_observation_counts(self) -> None:
        obs = observation(
            "241466007",
            system=SCT,
            side="left",
            date=day(5),
            components=[component("408715008", quantity=(70, "%"))],
        )
        assert _r09(obs, drafts=(stent_order("left"),)) == []

    def test_ct_percent_compression_is_not_ivus(self) -> None:
        ct = observation(
            "408715008",
            system=SCT,
            quantity=(70, "%"),
            side="left",
            method=("http://dicom.nema.org/resources/ontology/DCM", "CT"),
            date=day(5),
        )
        assert len(_r09(ct, drafts=(stent_order("left"),))) == 1

    def test_ivus_order_in_same_draft_set_passes(self) -> None:
        ivus = service_request("37252", side="left", sites=("46027005",))
        assert _r09(drafts=(stent_order("left"), ivus)) == []

    def test_ivus_order_for_other_side_does_not(self) -> None:
        ivus = service_request("37252", side="right", sites=("46027005",))
        assert len(_r09(drafts=(stent_order("left"), ivus))) == 1

    def test_recent_venogram_leaves_only_ivus(self) -> None:
        veno = procedure("75820", side="left", date=day(10))
        (card,) = _r09(veno, drafts=(stent_order("left"),))
        actions = card["suggestions"][0]["actions"]
        assert [a["resource"]["code"]["coding"][0]["code"] for a in actions] == [
            "37252"
        ]

    def test_not_on_patient_view(self) -> None:
        assert cards_of(run(SYMPTOMS), "R09") == []

    def test_order_select_checks_selected_device_request(self) -> None:
        drafts = (
            stent_order("left", id="s9"),
            device_request("ServiceRequest/s9", id="d9"),
        )
        chosen = run(
            hook="order-select", drafts=drafts, selections=("DeviceRequest/d9",)
        )
        assert len(cards_of(chosen, "R09")) == 1
        other = run(
            hook="order-select", drafts=drafts, selections=("ServiceRequest/unrelated",)
        )
        assert cards_of(other, "R09") == []
