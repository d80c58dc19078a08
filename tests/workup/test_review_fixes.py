"""Defects found in clinical review (D1-D8), each pinned by the reviewer's input."""

from __future__ import annotations

import pytest

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    CPT,
    ICD,
    SCT,
    Card,
    all_cards,
    cards_of,
    condition,
    day,
    device_request,
    medication_request,
    negative_duplex,
    observation,
    report,
    run,
    service_request,
    side_of,
    stent_order,
)
from tests.workup.test_rules_r10_r15 import ivus

CRITICAL_SUMMARY_END = (
    "DVT with no anticoagulant on record: start therapeutic anticoagulation now."
)


def _left_modifier(res: JsonObject, code: str) -> None:
    """CPT modifier LT as an extra coding of the study code (terminology.md §2.2 item 3)."""
    res["code"] = {
        "coding": [{"system": CPT, "code": code}, {"system": CPT, "code": "LT"}]
    }


def _ids(cards: list[Card]) -> set[str]:
    return {c["source"]["topic"]["code"] for c in cards}


class TestD1ChronicChangeDoesNotHideNewThrombus:
    def _resources(self, *, age_days: int, age_value: str) -> tuple[JsonObject, ...]:
        return (
            condition("R22.42", onset=day(3)),
            report("39432-0", conclusion=[(SCT, "373142009")], date=day(1)),
            observation(
                "thrombus-age", value=age_value, side="left", date=day(age_days)
            ),
        )

    def test_old_chronic_change_does_not_hide_a_new_thrombus(self) -> None:
        result = run(
            *self._resources(age_days=200, age_value="chronic-post-thrombotic-change")
        )
        (card,) = cards_of(result, "R05a")
        assert card["indicator"] == "critical"
        assert side_of(result, card) == "left"

    def test_chronic_change_of_the_same_study_still_counts_as_chronic(self) -> None:
        result = run(
            *self._resources(age_days=1, age_value="chronic-post-thrombotic-change")
        )
        assert cards_of(result, "R05a") == []

    def test_chronic_change_dated_before_the_thrombus_never_overrides_it(
        self,
    ) -> None:
        result = run(
            *self._resources(age_days=2, age_value="chronic-post-thrombotic-change")
        )
        assert len(cards_of(result, "R05a")) == 1


class TestD2LegDuplexDoesNotSupersedeIliacCt:
    def test_fempop_duplex_does_not_clear_iliac_thrombus_on_ct(self) -> None:
        result = run(
            condition("R22.42", onset=day(22)),
            report("72191", system=CPT, conclusion=[(ICD, "I82.422")], date=day(20)),
            report("39432-0", conclusion=[(SCT, "373140001")], date=day(2)),
        )
        (card,) = cards_of(result, "R05a")
        assert card["indicator"] == "critical"
        assert side_of(result, card) == "left"
        assert card["summary"] == f"Left iliac {CRITICAL_SUMMARY_END}"

    def test_iliac_duplex_does_not_outrank_ct_for_the_iliac_segment(self) -> None:
        iliac_duplex = report("93979", system=CPT, conclusion=[(SCT, "373140001")])
        _left_modifier(iliac_duplex, "93979")
        result = run(
            condition("R22.42", onset=day(22)),
            report("72191", system=CPT, conclusion=[(ICD, "I82.422")], date=day(20)),
            iliac_duplex,
        )
        assert len(cards_of(result, "R05a")) == 1

    def test_later_negative_ct_still_supersedes_an_iliac_ct_thrombus(self) -> None:
        negative_ct = report(
            "72191", system=CPT, conclusion=[(SCT, "373140001")], date=day(2)
        )
        _left_modifier(negative_ct, "72191")
        result = run(
            condition("R22.42", onset=day(22)),
            report("72191", system=CPT, conclusion=[(ICD, "I82.422")], date=day(20)),
            negative_ct,
        )
        assert cards_of(result, "R05a") == []

    def test_later_negative_leg_duplex_supersedes_a_leg_duplex_thrombus(
        self,
    ) -> None:
        result = run(
            condition("R22.42", onset=day(22)),
            report("39432-0", conclusion=[(SCT, "373142009")], date=day(20)),
            report("39432-0", conclusion=[(SCT, "373140001")], date=day(2)),
        )
        assert cards_of(result, "R05a") == []


UNSIDED_DVT = (
    ("I82.409", ICD),
    ("128053003", SCT),
    ("I82.4Y9", ICD),
)


class TestD3UnsidedDvtStillNeedsAnticoagulation:
    @pytest.mark.parametrize(("code", "system"), UNSIDED_DVT)
    def test_unsided_acute_dvt_gives_patient_level_r05a(
        self, code: str, system: str
    ) -> None:
        result = run(condition(code, system=system, onset=day(3)))
        assert len(cards_of(result, "R00a")) == 1
        (card,) = cards_of(result, "R05a")
        assert card["indicator"] == "critical"
        assert side_of(result, card) is None
        assert card["summary"] == f"Unspecified-side proximal {CRITICAL_SUMMARY_END}"

    def test_unsided_dvt_with_anticoagulant_no_card(self) -> None:
        result = run(condition("I82.409", onset=day(3)), medication_request("1232086"))
        assert cards_of(result, "R05a") == []

    def test_unsided_distal_dvt_no_card(self) -> None:
        assert cards_of(run(condition("I82.4Z9", onset=day(3))), "R05a") == []

    def test_sided_dvt_gives_one_sided_card_only(self) -> None:
        result = run(
            condition("I82.422", onset=day(3)), condition("I82.409", onset=day(3))
        )
        (card,) = cards_of(result, "R05a")
        assert side_of(result, card) == "left"

    @pytest.mark.parametrize(("code", "system"), UNSIDED_DVT)
    def test_unsided_dvt_with_contraindication_gives_patient_level_r05c(
        self, code: str, system: str
    ) -> None:
        result = run(condition(code, system=system, onset=day(3)), condition("I61.9"))
        assert cards_of(result, "R05a") == []
        (card,) = cards_of(result, "R05c")
        assert card["indicator"] == "warning"
        assert side_of(result, card) is None


class TestD4UlcerOrSkinChangeIsNotMinimalSymptoms:
    @pytest.mark.parametrize("code", ["I83.022", "I83.12"])
    def test_varicose_veins_with_ulcer_or_inflammation_pass_r12a(
        self, code: str
    ) -> None:
        result = run(
            condition(code),
            negative_duplex("left", days_ago=3),
            *ivus("left"),
            hook="order-sign",
            drafts=(
                stent_order("left", id="stent-d4"),
                device_request("ServiceRequest/stent-d4"),
            ),
        )
        assert cards_of(result, "R12a") == []

    def test_plain_varicose_veins_still_fire_r12a(self) -> None:
        result = run(
            condition("I83.92"), hook="order-sign", drafts=(stent_order("left"),)
        )
        assert len(cards_of(result, "R12a")) == 1


class TestD5CommonAnticoagulantCodes:
    @pytest.mark.parametrize(
        "rxcui",
        [
            "1364435",  # apixaban 2.5 MG Oral Tablet
            "1364445",  # apixaban 5 MG Oral Tablet
            "1037045",  # dabigatran etexilate 150 MG Oral Capsule
            "1599555",  # edoxaban 60 MG Oral Tablet
            "855332",  # warfarin sodium 5 MG Oral Tablet
            "854228",  # 0.3 ML enoxaparin sodium 100 MG/ML Prefilled Syringe
            "854241",  # 0.8 ML enoxaparin sodium 100 MG/ML Prefilled Syringe
            "978725",  # 0.2 ML dalteparin sodium 12500 UNT/ML Prefilled Syringe
            "1361615",  # heparin sodium, porcine 5000 UNT/ML Injectable Solution
            "861360",  # 0.5 ML fondaparinux sodium 5 MG/ML Prefilled Syringe
        ],
    )
    def test_active_anticoagulant_suppresses_r05a(self, rxcui: str) -> None:
        result = run(condition("I82.422", onset=day(3)), medication_request(rxcui))
        assert cards_of(result, "R05a") == []

    def test_pregnant_warfarin_draft_gives_r19b(self) -> None:
        result = run(
            condition("Z33.1"),
            hook="order-sign",
            drafts=(medication_request("855332", status="draft"),),
        )
        (card,) = cards_of(result, "R19b")
        assert "warfarin" in card["summary"]

    def test_pregnant_apixaban_draft_gives_r19b(self) -> None:
        result = run(
            condition("Z33.1"),
            hook="order-sign",
            drafts=(medication_request("1364445", status="draft"),),
        )
        (card,) = cards_of(result, "R19b")
        assert "a DOAC" in card["summary"]

    def test_free_text_alone_is_never_recognised(self) -> None:
        med = medication_request("1364445")
        med["medicationCodeableConcept"] = {"text": "apixaban 5 mg"}
        result = run(condition("I82.422", onset=day(3)), med)
        assert len(cards_of(result, "R05a")) == 1


class TestD6MinorContralateralSymptom:
    def _base(self) -> tuple[JsonObject, ...]:
        return (
            condition("R22.42", onset=day(5)),
            observation("swelling-extent", value="whole-leg", side="left", date=day(1)),
            negative_duplex("bilateral", days_ago=2),
        )

    def test_minor_pain_on_the_other_leg_does_not_silence_r02(self) -> None:
        result = run(*self._base(), condition("M79.604"))
        (card,) = cards_of(result, "R02")
        assert card["indicator"] == "warning"
        assert side_of(result, card) == "left"

    def test_whole_leg_swelling_on_both_legs_is_bilateral_no_r02(self) -> None:
        result = run(
            *self._base(),
            condition("R22.41", onset=day(5)),
            observation(
                "swelling-extent", value="whole-leg", side="right", date=day(1)
            ),
        )
        assert cards_of(result, "R02") == []


class TestD7HeldOrIntendedAnticoagulantIsNotActive:
    @pytest.mark.parametrize("status", ["on-hold", "intended"])
    def test_held_or_intended_anticoagulant_does_not_suppress_r05a(
        self, status: str
    ) -> None:
        med = medication_request("1232086", status=status)
        if status == "intended":
            med["resourceType"] = "MedicationStatement"
            del med["intent"]
        result = run(condition("I82.422", onset=day(3)), med)
        assert len(cards_of(result, "R05a")) == 1

    def test_active_statement_still_counts(self) -> None:
        med = medication_request("1232086", status="active")
        med["resourceType"] = "MedicationStatement"
        del med["intent"]
        result = run(condition("I82.422", onset=day(3)), med)
        assert cards_of(result, "R05a") == []


class TestD8DoNotPerformOrders:
    SYMPTOMS = condition("R22.42", onset=day(200))

    def test_do_not_perform_ivus_does_not_satisfy_r09(self) -> None:
        ivus = service_request("37252", side="left", sites=("46027005",))
        ivus["doNotPerform"] = True
        result = run(
            self.SYMPTOMS,
            hook="order-sign",
            drafts=(
                stent_order("left", id="s-d8"),
                device_request("ServiceRequest/s-d8"),
                ivus,
            ),
        )
        (card,) = cards_of(result, "R09")
        assert card["indicator"] == "critical"

    def test_drafted_ivus_still_satisfies_r09(self) -> None:
        ivus = service_request("37252", side="left", sites=("46027005",))
        result = run(
            self.SYMPTOMS,
            hook="order-sign",
            drafts=(
                stent_order("left", id="s-d8b"),
                device_request("ServiceRequest/s-d8b"),
                ivus,
            ),
        )
        assert cards_of(result, "R09") == []

    def test_do_not_perform_stent_is_not_checked(self) -> None:
        stent = stent_order("left", id="s-d8c")
        stent["doNotPerform"] = True
        result = run(
            hook="order-sign",
            drafts=(stent, device_request("ServiceRequest/s-d8c", length=(40, "mm"))),
        )
        stent_rules = {"R09", "R10", "R12a", "R13", "R14", "R15"}
        assert not stent_rules & _ids(all_cards(result))
