"""R05a-R05d: anticoagulation, IVC filter and thrombolysis checks for confirmed DVT."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    ICD,
    LOCAL,
    PATIENT,
    SCT,
    Card,
    all_cards,
    cards_of,
    condition,
    day,
    medication_request,
    observation,
    procedure,
    report,
    run,
    service_request,
    side_of,
)

RIVAROXABAN = "1232082"
ENOXAPARIN = "854235"
PREGNANT = condition("77386006", system=SCT)
ICH = condition("I61.9")


def dvt(
    code: str = "I82.422",
    *,
    side: str | None = "left",
    site: str | None = "46027005",
    onset: int | None = 4,
    recorded: int | None = None,
    clinical: str = "active",
    verification: str | None = None,
) -> JsonObject:
    res = condition(
        code,
        side=side,
        site=site,
        onset=day(onset) if onset is not None else None,
        clinical=clinical,
        verification=verification,
    )
    if recorded is not None:
        res["recordedDate"] = day(recorded)
    return res


def _r(rule: str, *resources: JsonObject, hook: str = "patient-view") -> list[Card]:
    return cards_of(run(*resources, hook=hook), rule)


class TestR05a:
    def test_acute_left_iliac_dvt_without_anticoagulant_is_critical(self) -> None:
        result = run(dvt())
        (card,) = cards_of(result, "R05a")
        assert card["indicator"] == "critical"
        assert (
            card["summary"]
            == "Left iliac DVT with no anticoagulant on record: start therapeutic anticoagulation now."
        )
        assert side_of(result, card) == "left"
        assert card["source"]["label"] == "R05a · SEED-001, CHEST-2021"

    def test_suggests_a_valid_draft_medication_request_without_a_product_code(
        self,
    ) -> None:
        (card,) = _r("R05a", dvt())
        (suggestion,) = card["suggestions"]
        (action,) = suggestion["actions"]
        resource = action["resource"]
        MedicationRequest.model_validate(resource)
        assert resource["resourceType"] == "MedicationRequest"
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")
        assert resource["subject"] == {"reference": f"Patient/{PATIENT}"}
        codings = resource["medicationCodeableConcept"]["coding"]
        assert [(c["system"], c["code"]) for c in codings] == [(SCT, "81839001")]
        assert "LMWH" in resource["medicationCodeableConcept"]["text"]
        assert "DOAC" in resource["medicationCodeableConcept"]["text"]
        assert resource["reasonReference"][0]["reference"].startswith("Condition/")

    def test_pregnancy_suggests_lmwh_only(self) -> None:
        (card,) = _r("R05a", dvt(), PREGNANT)
        (suggestion,) = card["suggestions"]
        text = suggestion["actions"][0]["resource"]["medicationCodeableConcept"]["text"]
        assert "LMWH" in text
        assert "DOAC" not in text

    @pytest.mark.parametrize(
        ("code", "site", "segment"),
        [
            ("I82.412", "83419000", "femoral"),
            ("I82.432", "56849005", "popliteal"),
            ("I82.4Y2", None, "proximal"),
        ],
    )
    def test_names_the_segment(self, code: str, site: str | None, segment: str) -> None:
        (card,) = _r("R05a", dvt(code, site=site))
        assert card["summary"].startswith(f"Left {segment} DVT with no anticoagulant")

    def test_right_side(self) -> None:
        result = run(dvt("I82.431", side="right", site="56849005"))
        (card,) = cards_of(result, "R05a")
        assert side_of(result, card) == "right"
        assert card["summary"].startswith("Right popliteal DVT")

    def test_both_legs_make_one_bilateral_card(self) -> None:
        result = run(dvt(), dvt("I82.411", side="right", site="83419000", onset=3))
        (card,) = cards_of(result, "R05a")
        assert side_of(result, card) == "bilateral"
        assert card["summary"].startswith("Bilateral iliac DVT")

    def test_ivc_thrombosis_is_bilateral(self) -> None:
        result = run(dvt("I82.220", side=None, site=None))
        (card,) = cards_of(result, "R05a")
        assert side_of(result, card) == "bilateral"
        assert card["summary"].startswith("Bilateral IVC DVT")

    @pytest.mark.parametrize(("onset", "fires"), [(30, True), (31, False)])
    def test_without_recorded_date_the_onset_dates_the_diagnosis(
        self, onset: int, fires: bool
    ) -> None:
        assert bool(_r("R05a", dvt(onset=onset))) is fires

    def test_acute_onset_fires(self) -> None:
        assert len(_r("R05a", dvt(onset=13, recorded=13))) == 1

    @pytest.mark.parametrize(("recorded", "fires"), [(30, True), (31, False)])
    def test_diagnosed_within_30_days_branch(self, recorded: int, fires: bool) -> None:
        cards = _r(
            "R05a",
            dvt("I82.431", side="right", site="56849005", onset=45, recorded=recorded),
        )
        assert bool(cards) is fires

    def test_diagnosed_45_days_ago_no_card(self) -> None:
        assert _r("R05a", dvt("I82.412", site="83419000", onset=50, recorded=45)) == []

    @pytest.mark.parametrize(("days_ago", "fires"), [(30, True), (31, False)])
    def test_imaging_only_thrombus_dates_the_diagnosis(
        self, days_ago: int, fires: bool
    ) -> None:
        finding = observation(
            "396339007",
            system=SCT,
            value="373142009",
            value_system=SCT,
            site="46027005",
            side="left",
            date=day(days_ago),
        )
        assert bool(_r("R05a", finding)) is fires

    def test_undated_dvt_fires_with_a_note(self) -> None:
        (card,) = _r("R05a", dvt(onset=None))
        assert "no onset or diagnosis date" in card["detail"]

    def test_distal_dvt_no_card(self) -> None:
        assert _r("R05a", dvt("I82.4Z2", site=None)) == []

    @pytest.mark.parametrize(
        "anticoagulant",
        [
            medication_request(RIVAROXABAN),
            medication_request(ENOXAPARIN),
        ],
    )
    def test_active_anticoagulant_no_card(self, anticoagulant: JsonObject) -> None:
        assert _r("R05a", dvt(), anticoagulant) == []

    def test_medication_statement_counts_as_anticoagulated(self) -> None:
        statement = medication_request(ENOXAPARIN)
        statement["resourceType"] = "MedicationStatement"
        del statement["intent"]
        assert _r("R05a", dvt(), statement) == []

    def test_stopped_anticoagulant_fires(self) -> None:
        assert (
            len(_r("R05a", dvt(), medication_request(RIVAROXABAN, status="stopped")))
            == 1
        )

    def test_contraindication_gives_r05c_not_r05a(self) -> None:
        result = run(dvt(), ICH)
        assert cards_of(result, "R05a") == []
        assert len(cards_of(result, "R05c")) == 1

    def test_refuted_or_resolved_dvt_no_card(self) -> None:
        assert _r("R05a", dvt(verification="refuted")) == []
        assert _r("R05a", dvt(clinical="resolved")) == []

    def test_fires_on_order_sign_not_on_order_select(self) -> None:
        duplex = service_request("93971", side="left", sites=("61685007",))
        sign = cards_of(run(dvt(), hook="order-sign", drafts=(duplex,)), "R05a")
        select = cards_of(run(dvt(), hook="order-select", drafts=(duplex,)), "R05a")
        assert len(sign) == 1
        assert select == []

    def test_order_sign_with_anticoagulant_in_the_order_set_no_card(self) -> None:
        draft = medication_request(ENOXAPARIN, status="draft")
        assert cards_of(run(dvt(), hook="order-sign", drafts=(draft,)), "R05a") == []

    def test_evaluated_before_dvt_exclusion(self) -> None:
        # §2.5 order: R05 DVT safety comes before R01 (here R01 for the other, symptomatic leg).
        result = run(dvt(), condition("R22.41", onset=day(5)))
        codes = [c["source"]["topic"]["code"] for c in all_cards(result)]
        assert codes.index("R05a") < codes.index("R01")


class TestR05b:
    def _filter(self, id: str = "f1") -> JsonObject:
        return service_request("37191", id=id)

    def test_filter_without_contraindication_warns(self) -> None:
        result = run(
            dvt(),
            medication_request(RIVAROXABAN),
            hook="order-select",
            drafts=(self._filter(),),
            selections=("ServiceRequest/f1",),
        )
        (card,) = cards_of(result, "R05b")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "IVC filter is indicated only if anticoagulation is contraindicated; none is documented."
        )
        assert side_of(result, card) is None
        codes = {r["code"] for r in card["overrideReasons"]}
        assert "recurrent-vte-on-anticoagulation" in codes

    def test_order_sign(self) -> None:
        result = run(dvt(), hook="order-sign", drafts=(self._filter(),))
        assert len(cards_of(result, "R05b")) == 1

    @pytest.mark.parametrize(
        "contraindication",
        [
            ICH,
            condition("K92.2"),
            observation("anticoagulation-contraindicated", system=LOCAL),
        ],
    )
    def test_documented_contraindication_no_card(
        self, contraindication: JsonObject
    ) -> None:
        if contraindication["resourceType"] == "Observation":
            contraindication["valueBoolean"] = True
        result = run(
            dvt(), contraindication, hook="order-sign", drafts=(self._filter(),)
        )
        assert cards_of(result, "R05b") == []

    def test_flag_false_is_not_a_contraindication(self) -> None:
        flag = observation("anticoagulation-contraindicated", system=LOCAL)
        flag["valueBoolean"] = False
        result = run(dvt(), flag, hook="order-sign", drafts=(self._filter(),))
        assert len(cards_of(result, "R05b")) == 1

    def test_resolved_bleed_is_not_a_contraindication(self) -> None:
        bleed = condition("K92.2", clinical="resolved")
        result = run(dvt(), bleed, hook="order-sign", drafts=(self._filter(),))
        assert len(cards_of(result, "R05b")) == 1

    def test_order_select_checks_only_selected_orders(self) -> None:
        other = service_request("93971", side="left", sites=("61685007",), id="us1")
        result = run(
            dvt(),
            hook="order-select",
            drafts=(self._filter(), other),
            selections=("ServiceRequest/us1",),
        )
        assert cards_of(result, "R05b") == []


class TestR05c:
    def test_proximal_dvt_with_contraindication_suggests_filter(self) -> None:
        result = run(dvt(), ICH)
        (card,) = cards_of(result, "R05c")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Proximal DVT with anticoagulation contraindicated: consider an IVC filter and plan its retrieval."
        )
        assert side_of(result, card) == "left"
        resource = card["suggestions"][0]["actions"][0]["resource"]
        assert [c["code"] for c in resource["code"]["coding"]] == ["37191", "105373008"]
        assert (resource["status"], resource["intent"]) == ("draft", "proposal")

    def test_right_popliteal(self) -> None:
        result = run(dvt("I82.431", side="right", site="56849005"), ICH)
        (card,) = cards_of(result, "R05c")
        assert side_of(result, card) == "right"

    def test_bilateral(self) -> None:
        result = run(dvt(), dvt("I82.411", side="right", site="83419000"), ICH)
        (card,) = cards_of(result, "R05c")
        assert side_of(result, card) == "bilateral"

    def test_no_time_window(self) -> None:
        assert len(_r("R05c", dvt(onset=60, recorded=58), ICH)) == 1

    def test_filter_in_situ_no_card(self) -> None:
        placed = procedure("37191", date=day(5))
        result = run(dvt(), ICH, placed)
        assert cards_of(result, "R05c") == []
        assert cards_of(result, "R05a") == []

    def test_old_filter_still_in_situ(self) -> None:
        assert _r("R05c", dvt(), ICH, procedure("37191", date=day(400))) == []

    def test_retrieved_filter_no_longer_counts(self) -> None:
        placed = procedure("37191", date=day(60))
        retrieved = procedure("37193", date=day(20))
        assert len(_r("R05c", dvt(), ICH, placed, retrieved)) == 1

    def test_filter_ordered_no_card(self) -> None:
        ordered = service_request("37191", status="active")
        assert _r("R05c", dvt(), ICH, ordered) == []

    def test_distal_dvt_no_card(self) -> None:
        assert _r("R05c", dvt("I82.4Z2", site=None), ICH) == []

    def test_without_contraindication_no_card(self) -> None:
        assert _r("R05c", dvt()) == []

    def test_patient_view_only(self) -> None:
        duplex = service_request("93971", side="left", sites=("61685007",))
        result = run(dvt(), ICH, hook="order-sign", drafts=(duplex,))
        assert cards_of(result, "R05c") == []


def lysis(
    side: str | None = "left", code: str = "37212", id: str = "lysis-1"
) -> JsonObject:
    return service_request(code, side=side, sites=("46027005",) if side else (), id=id)


class TestR05d:
    def _d(self, *resources: JsonObject, draft: JsonObject | None = None) -> list[Card]:
        return cards_of(
            run(*resources, hook="order-sign", drafts=(draft or lysis(),)), "R05d"
        )

    def test_pregnant_is_critical(self) -> None:
        (card,) = self._d(dvt(), PREGNANT, medication_request(ENOXAPARIN))
        assert card["indicator"] == "critical"
        assert (
            card["summary"]
            == "Thrombolysis is reserved for limb-threatening DVT in pregnancy (bleeding risk ~8%); reconsider."
        )
        codes = {r["code"] for r in card["overrideReasons"]}
        assert "limb-threatening-or-massive-pe" in codes

    def test_acute_iliofemoral_without_bleeding_flags_no_card(self) -> None:
        assert self._d(dvt(onset=5), medication_request(ENOXAPARIN)) == []

    @pytest.mark.parametrize(("onset", "fires"), [(13, False), (14, True)])
    def test_onset_boundary(self, onset: int, fires: bool) -> None:
        cards = self._d(dvt(onset=onset))
        assert bool(cards) is fires
        if fires:
            assert cards[0]["indicator"] == "warning"
            assert (
                cards[0]["summary"]
                == "Catheter lysis fits only acute (<14 d) iliofemoral DVT with low bleeding risk; check eligibility."
            )

    def test_femoral_only_dvt_warns(self) -> None:
        (card,) = self._d(dvt("I82.412", site="83419000"))
        assert "iliofemoral" in card["detail"]

    def test_no_dvt_warns(self) -> None:
        assert len(self._d()) == 1

    def test_contraindication_warns(self) -> None:
        (card,) = self._d(dvt(onset=3), condition("K92.2"))
        assert card["indicator"] == "warning"
        assert "contraindication" in card["detail"]

    def test_dvt_on_the_other_leg_does_not_qualify(self) -> None:
        assert len(self._d(dvt(side="right"), draft=lysis("left"))) == 1

    def test_right_side_and_thrombectomy(self) -> None:
        result = run(
            dvt(onset=20, side="right"),
            hook="order-sign",
            drafts=(lysis("right", code="37187"),),
        )
        (card,) = cards_of(result, "R05d")
        assert side_of(result, card) == "right"

    def test_imaging_only_iliac_thrombus_dates_onset(self) -> None:
        ctv = report(
            "72191",
            system="http://www.ama-assn.org/go/cpt",
            conclusion=[(SCT, "373142009"), (ICD, "I82.422")],
            date=day(3),
        )
        assert self._d(ctv) == []

    def test_order_select_selected_only(self) -> None:
        result = run(
            dvt(onset=30),
            hook="order-select",
            drafts=(lysis(),),
            selections=("ServiceRequest/other",),
        )
        assert cards_of(result, "R05d") == []
        result = run(
            dvt(onset=30),
            hook="order-select",
            drafts=(lysis(),),
            selections=("ServiceRequest/lysis-1",),
        )
        assert len(cards_of(result, "R05d")) == 1

    def test_not_on_patient_view(self) -> None:
        assert _r("R05d", dvt(onset=30)) == []
