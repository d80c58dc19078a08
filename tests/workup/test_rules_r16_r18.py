"""R16 post-stent surveillance, R17 routine antithrombotics after NIVL stenting, R18 IVUS-candidate patterns."""

from __future__ import annotations

import pytest

from app.workup.derived import Derived
from app.workup.extract import extract_facts
from app.workup.facts import Side
from app.workup.jsontypes import JsonObject, JsonValue
from app.workup.rules import Finding, RuleContext
from app.workup.suppression import apply_suppression
from tests.workup.factories import (
    ICD,
    LOCAL,
    NOW,
    PATIENT,
    SCT,
    Card,
    all_cards,
    cards_of,
    catalog,
    cc,
    condition,
    day,
    negative_duplex,
    observation,
    procedure,
    report,
    run,
    side_of,
)

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CIV = "46027005"


def _codes(card: Card) -> list[str]:
    return [
        coding["code"]
        for s in card["suggestions"]
        for a in s["actions"]
        for coding in a["resource"]["code"]["coding"]
    ]


# -- R16 -----------------------------------------------------------------------------------------------


def stent(side: str = "left", days_ago: int = 100) -> list[JsonObject]:
    """A completed stent Procedure, its Z95.820 status and a NIVL etiology (scenario library conventions)."""
    return [
        procedure("37238", side=side, site=CIV, date=day(days_ago)),
        condition("Z95.820", side=side, site=CIV, onset=day(days_ago)),
        observation(
            "obstruction-etiology", value="nivl", side=side, date=day(days_ago)
        ),
    ]


def _r16(*resources: JsonObject, hook: str = "patient-view") -> list[Card]:
    return cards_of(run(*resources, hook=hook), "R16")


class TestR16:
    def test_stent_15_months_last_duplex_13_months_is_due(self) -> None:
        result = run(*stent("left", 455), negative_duplex("left", days_ago=395))
        (card,) = cards_of(result, "R16")
        assert card["indicator"] == "info"
        assert side_of(result, card) == "left"
        assert (
            card["summary"]
            == "Iliac vein stent (2024-12-02): surveillance imaging is due; order venous duplex of the stented segment."
        )
        assert _codes(card) == ["93979", "24870-8"]
        site = card["suggestions"][0]["actions"][0]["resource"]["bodySite"][0]
        assert site["coding"][0]["code"] == "244411005"
        assert site["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == (
            "7771000"
        )
        # The stale stent and duplex only date surveillance: no R00c (R00c text).
        assert cards_of(result, "R00c") == []

    def test_right_stent_8_weeks_with_only_pre_stent_duplex(self) -> None:
        result = run(*stent("right", 56), negative_duplex("right", days_ago=70))
        (card,) = cards_of(result, "R16")
        assert side_of(result, card) == "right"
        assert "2026-01-05" in card["summary"]

    @pytest.mark.parametrize(
        ("days_ago", "due"), [(28, False), (42, False), (43, True)]
    )
    def test_not_due_until_stent_is_over_6_weeks(
        self, days_ago: int, due: bool
    ) -> None:
        assert len(_r16(*stent("left", days_ago))) == int(due)

    def test_young_stent_without_any_imaging_is_not_due(self) -> None:
        # The stenting procedure includes venography: it is the imaging of the last 12 months.
        assert _r16(*stent("left", 20)) == []

    def test_duplex_after_stenting_within_12_months(self) -> None:
        assert _r16(*stent("left", 300), negative_duplex("left", days_ago=210)) == []

    @pytest.mark.parametrize(("duplex_days", "due"), [(365, False), (366, True)])
    def test_12_month_boundary(self, duplex_days: int, due: bool) -> None:
        resources = (*stent("left", 700), negative_duplex("left", days_ago=duplex_days))
        assert len(_r16(*resources)) == int(due)

    def test_imaging_on_the_day_of_stenting_does_not_count(self) -> None:
        assert len(_r16(*stent("left", 60), negative_duplex("left", days_ago=60))) == 1

    def test_contralateral_imaging_does_not_count(self) -> None:
        result = run(*stent("left", 200), negative_duplex("right", days_ago=30))
        (card,) = cards_of(result, "R16")
        assert side_of(result, card) == "left"

    def test_bilateral_duplex_counts(self) -> None:
        assert (
            _r16(*stent("left", 200), negative_duplex("bilateral", days_ago=30)) == []
        )

    def test_unlateralised_pelvic_ctv_counts_for_the_stented_leg(self) -> None:
        ctv = report("30623-3", date=day(30), conclusion=[(SCT, "373140001")])
        assert _r16(*stent("left", 200), ctv) == []

    def test_ivus_after_stenting_counts(self) -> None:
        ivus = procedure("37252", side="left", site=CIV, date=day(30))
        assert _r16(*stent("left", 200), ivus) == []

    def test_bilateral_stents_give_one_card_per_leg(self) -> None:
        result = run(*stent("left", 200), *stent("right", 100))
        cards = cards_of(result, "R16")
        assert sorted(side_of(result, c) or "" for c in cards) == ["left", "right"]

    def test_status_code_alone_is_a_stent_in_situ(self) -> None:
        status = condition("Z95.820", side="left", site=CIV, onset=day(400))
        (card,) = _r16(status)
        assert "2025-01-26" in card["summary"]

    def test_status_recorded_without_onset_has_unknown_date(self) -> None:
        status = condition("Z95.820", side="left", site=CIV)
        status["recordedDate"] = day(10)
        (card,) = _r16(status)
        assert "(date unknown)" in card["summary"]
        assert _r16(status, negative_duplex("left", days_ago=100)) == []

    def test_stent_without_laterality_gives_no_r16(self) -> None:
        result = run(procedure("37238", site=CIV, date=day(200)))
        assert cards_of(result, "R16") == []
        assert len(cards_of(result, "R00a")) == 1

    def test_planned_or_other_procedures_are_not_a_stent(self) -> None:
        planned = procedure(
            "37238", side="left", site=CIV, date=day(200), status="preparation"
        )
        assert _r16(planned) == []

    def test_patient_view_only(self) -> None:
        assert _r16(*stent("left", 455), hook="order-sign") == []


# -- R17 -----------------------------------------------------------------------------------------------


def med_draft(
    code: str = "1232086",
    *,
    reasons: tuple[tuple[str, str], ...] = ((ICD, "Z95.820"),),
    id: str = "med-draft",
    do_not_perform: bool = False,
) -> JsonObject:
    res: JsonObject = {
        "resourceType": "MedicationRequest",
        "id": id,
        "status": "draft",
        "intent": "proposal",
        "medicationCodeableConcept": cc(RXNORM, code),
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": day(0),
    }
    if reasons:
        reason_list: list[JsonValue] = [
            {**cc(s, c), "text": "post iliac vein stent"} for s, c in reasons
        ]
        res["reasonCode"] = reason_list
    if do_not_perform:
        res["doNotPerform"] = True
    return res


def _r17(
    *resources: JsonObject,
    draft: JsonObject | None = None,
    hook: str = "order-select",
    selections: tuple[str, ...] = ("MedicationRequest/med-draft",),
) -> list[Card]:
    drafts = (draft if draft is not None else med_draft(),)
    return cards_of(
        run(*resources, hook=hook, drafts=drafts, selections=selections), "R17"
    )


class TestR17:
    def test_nivl_stent_with_anticoagulant_for_the_stent(self) -> None:
        result = run(
            *stent("left", 90),
            hook="order-select",
            drafts=(med_draft(),),
            selections=("MedicationRequest/med-draft",),
        )
        (card,) = cards_of(result, "R17")
        assert card["indicator"] == "info"
        assert (
            card["summary"]
            == "After stenting a non-thrombotic iliac lesion, routine anticoagulation has no consensus; confirm indication."
        )
        assert side_of(result, card) == "left"
        # Never suggest adding (or changing) antithrombotic therapy.
        assert "suggestions" not in card
        assert all(
            "MedicationRequest" not in str(c.get("suggestions", []))
            for c in all_cards(result)
        )

    def test_order_sign_and_right_leg(self) -> None:
        (card,) = _r17(*stent("right", 90), hook="order-sign", selections=())
        assert card["indicator"] == "info"

    def test_antiplatelet_for_the_stent(self) -> None:
        assert len(_r17(*stent("left", 90), draft=med_draft("1191"))) == 1

    def test_reason_reference_to_the_stent_status(self) -> None:
        status = condition("Z95.820", side="left", site=CIV, onset=day(90), id="z95")
        draft = med_draft(reasons=())
        draft["reasonReference"] = [{"reference": "Condition/z95"}]
        assert (
            len(
                _r17(procedure("37238", side="left", date=day(90)), status, draft=draft)
            )
            == 1
        )

    @pytest.mark.parametrize(
        "history",
        [
            condition("Z86.718"),
            condition("I82.422", clinical="resolved", onset=day(800)),
            condition("I82.522"),
            condition("I26.99"),
            condition("I87.002"),
            condition("T82.868A"),
        ],
        ids=["Z86.718", "resolved-dvt", "chronic-dvt", "pe", "pts", "stent-thrombosis"],
    )
    def test_never_with_vte_history(self, history: JsonObject) -> None:
        assert _r17(*stent("left", 90), history) == []

    def test_never_for_post_thrombotic_stent(self) -> None:
        resources = [
            procedure("37238", side="left", site=CIV, date=day(90)),
            observation(
                "obstruction-etiology",
                value="post-thrombotic",
                side="left",
                date=day(90),
            ),
        ]
        assert _r17(*resources) == []

    def test_never_after_stale_thrombus_imaging(self) -> None:
        old = negative_duplex("left", days_ago=800)
        old["conclusionCode"] = [cc(SCT, "373142009")]
        assert _r17(*stent("left", 90), old) == []

    def test_never_with_active_dvt(self) -> None:
        assert _r17(*stent("left", 90), condition("I82.412", onset=day(3))) == []

    def test_not_for_mass_compression_stent(self) -> None:
        resources = [
            procedure("37238", side="left", site=CIV, date=day(90)),
            observation(
                "obstruction-etiology",
                value="extrinsic-mass",
                side="left",
                date=day(90),
            ),
        ]
        assert _r17(*resources) == []

    def test_not_with_atrial_fibrillation_condition(self) -> None:
        assert _r17(*stent("left", 90), condition("I48.91")) == []

    def test_not_with_atrial_fibrillation_reason(self) -> None:
        draft = med_draft(reasons=((ICD, "Z95.820"), (ICD, "I48.91")))
        assert _r17(*stent("left", 90), draft=draft) == []

    def test_not_in_pregnancy(self) -> None:
        assert _r17(*stent("left", 90), condition("77386006", system=SCT)) == []

    def test_not_without_a_stent_reason(self) -> None:
        assert _r17(*stent("left", 90), draft=med_draft(reasons=())) == []

    def test_not_without_stent_in_situ(self) -> None:
        assert (
            _r17(observation("obstruction-etiology", value="nivl", side="left")) == []
        )

    def test_not_for_do_not_perform_order(self) -> None:
        assert _r17(*stent("left", 90), draft=med_draft(do_not_perform=True)) == []

    def test_order_select_checks_only_selected_orders(self) -> None:
        assert _r17(*stent("left", 90), selections=("ServiceRequest/other",)) == []

    def test_not_on_patient_view(self) -> None:
        assert _r17(*stent("left", 90), hook="patient-view", selections=()) == []

    def test_bilateral_nivl_stents_give_one_bilateral_card(self) -> None:
        result = run(
            *stent("left", 90),
            *stent("right", 90),
            hook="order-sign",
            drafts=(med_draft(),),
        )
        (card,) = cards_of(result, "R17")
        assert side_of(result, card) == "bilateral"


# -- R18 -----------------------------------------------------------------------------------------------


def swelling(side: str = "left", extent: str = "below-knee") -> list[JsonObject]:
    code = {"left": "R22.42", "right": "R22.41", "bilateral": "R22.43"}[side]
    return [
        condition(code, onset=day(25)),
        observation("swelling-extent", value=extent, side=side, date=day(1)),
    ]


def ceap(value: str, side: str = "left") -> JsonObject:
    return observation("ceap-c", value=value, side=side, date=day(10))


def reflux(value: str = "absent", side: str | None = "left") -> JsonObject:
    return observation("venous-reflux", value=value, side=side, date=day(10))


def _r18(*resources: JsonObject, hook: str = "patient-view") -> list[Card]:
    return cards_of(run(*resources, hook=hook), "R18")


class TestR18Pattern1:
    def test_unexplained_unilateral_swelling_after_negative_duplex(self) -> None:
        result = run(*swelling("left"), negative_duplex("left", days_ago=6))
        (card,) = cards_of(result, "R18")
        assert card["indicator"] == "info"
        assert side_of(result, card) == "left"
        assert (
            card["summary"]
            == "Unexplained left leg swelling: consider iliac outflow obstruction; image the pelvic veins (CTV or MRV) first."
        )
        assert card["selectionBehavior"] == "at-most-one"
        assert _codes(card) == ["72191", "30623-3", "72198", "36789-6"]
        # Never IVUS or venography directly.
        assert not {"37252", "241466007", "75820"} & set(_codes(card))

    def test_right_leg(self) -> None:
        result = run(*swelling("right"), negative_duplex("right", days_ago=6))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "right"

    def test_bilateral_swelling_is_not_unilateral(self) -> None:
        resources = (*swelling("bilateral"), negative_duplex("bilateral", days_ago=6))
        assert _r18(*resources) == []

    def test_duplex_31_days_old_does_not_exclude_dvt(self) -> None:
        assert _r18(*swelling("left"), negative_duplex("left", days_ago=31)) == []

    @pytest.mark.parametrize("cause", ["N18.4", "I89.0", "I50.9"])
    def test_systemic_cause_or_lymphedema_explains_it(self, cause: str) -> None:
        resources = (*swelling("left"), negative_duplex("left"), condition(cause))
        assert _r18(*resources) == []

    def test_pulsatile_cfv_points_to_the_heart(self) -> None:
        cfv = observation(
            "cfv-waveform",
            value="pulsatile",
            side="left",
            site="397363009",
            date=day(6),
        )
        assert _r18(*swelling("left"), negative_duplex("left", days_ago=6), cfv) == []

    def test_swelling_resolved_before_the_duplex(self) -> None:
        old = condition("R22.42", onset=day(25), clinical="resolved")
        assert _r18(old, negative_duplex("left", days_ago=6)) == []

    @pytest.mark.parametrize(("ctv_days", "fires"), [(90, False), (91, True)])
    def test_pelvic_imaging_within_w_xsec_stops_it(
        self, ctv_days: int, fires: bool
    ) -> None:
        ctv = report("30623-3", date=day(ctv_days), conclusion=[(SCT, "373140001")])
        resources = (*swelling("left"), negative_duplex("left", days_ago=6), ctv)
        assert len(_r18(*resources)) == int(fires)

    def test_suppressed_where_r02_fires(self) -> None:
        result = run(
            *swelling("left", "whole-leg"), negative_duplex("left", days_ago=6)
        )
        assert len(cards_of(result, "R02")) == 1
        assert cards_of(result, "R18") == []

    def test_suppressed_where_r03_fires(self) -> None:
        cfv = observation(
            "cfv-waveform",
            value="non-phasic-continuous",
            side="left",
            site="397363009",
            date=day(6),
        )
        result = run(*swelling("left"), negative_duplex("left", days_ago=6), cfv)
        assert len(cards_of(result, "R03")) == 1
        assert cards_of(result, "R18") == []

    def test_pregnancy_offers_non_contrast_mrv_first(self) -> None:
        result = run(
            *swelling("left"),
            negative_duplex("left", days_ago=6),
            condition("77386006", system=SCT),
        )
        (card,) = cards_of(result, "R18")
        first = card["suggestions"][0]["actions"][0]["resource"]
        assert first["code"]["coding"][0]["code"] == "72198"
        assert "without contrast" in first["code"]["text"]

    def test_unlateralised_swelling_gives_no_r18(self) -> None:
        resources = (
            condition("102572006", system=SCT, onset=day(20)),
            negative_duplex(),
        )
        assert _r18(*resources) == []


class TestR18OtherPatterns:
    def claudication(self, side: str = "left") -> JsonObject:
        return condition("venous-claudication", system=LOCAL, side=side, onset=day(60))

    @pytest.mark.parametrize(
        ("abi", "fires"), [(0.9, True), (1.4, True), (0.89, False), (1.41, False)]
    )
    def test_claudication_with_abi(self, abi: float, fires: bool) -> None:
        abi_obs = observation("ankle-brachial-index", quantity=(abi, ""), side="left")
        result = run(self.claudication(), abi_obs)
        cards = cards_of(result, "R18")
        assert len(cards) == int(fires)
        if fires:
            assert cards[0]["summary"].startswith(
                "Left venous claudication, normal arterial study:"
            )

    def test_claudication_with_normal_arterial_duplex_right(self) -> None:
        result = run(
            self.claudication("right"), observation("arterial-study", value="normal")
        )
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "right"

    def test_claudication_with_abnormal_latest_arterial_study(self) -> None:
        normal = observation("arterial-study", value="normal", date=day(100))
        abnormal = observation("arterial-study", value="abnormal", date=day(5))
        assert _r18(self.claudication(), normal, abnormal) == []

    def test_claudication_without_arterial_study(self) -> None:
        assert _r18(self.claudication()) == []

    @pytest.mark.parametrize("value", ["C4a", "C4b", "C4c"])
    def test_skin_changes_without_reflux(self, value: str) -> None:
        (card,) = _r18(ceap(value), reflux("absent"))
        assert card["summary"].startswith(
            "Left ankle skin changes without venous reflux:"
        )

    def test_skin_changes_with_reflux(self) -> None:
        assert _r18(ceap("C4a"), reflux("present")) == []

    def test_skin_changes_without_a_reflux_study(self) -> None:
        assert _r18(ceap("C4b")) == []

    @pytest.mark.parametrize("value", ["C5", "C6", "C6r"])
    def test_ulcer_without_reflux(self, value: str) -> None:
        (card,) = _r18(ceap(value, "right"), reflux("absent", side=None))
        assert card["summary"].startswith("Right venous ulcer without venous reflux:")

    def test_ulcer_condition_without_reflux(self) -> None:
        ulcer = condition("L97.922", onset=day(40))
        assert len(_r18(ulcer, reflux("absent"))) == 1

    def test_recurrent_varices_c2r(self) -> None:
        result = run(condition("I83.92", onset=day(200)), ceap("C2r"))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "left"
        assert card["summary"].startswith(
            "Recurrent left varicose veins after treatment:"
        )
        assert cards_of(result, "R01") == []

    def test_varices_after_an_old_ablation(self) -> None:
        ablation = procedure("36475", date=day(1200))
        assert len(_r18(condition("I83.91", onset=day(100)), ablation)) == 1

    def test_varices_without_treatment(self) -> None:
        assert _r18(condition("I83.92", onset=day(100)), ceap("C2")) == []

    def test_lateralised_pelvic_varices(self) -> None:
        result = run(condition("I86.2", side="right", onset=day(30)))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "right"
        assert card["summary"].startswith("Suprapubic or pelvic varices:")

    def test_unlateralised_pelvic_varices_give_one_patient_level_card(self) -> None:
        result = run(condition("I86.2", onset=day(30)))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) is None
        assert "72191" in _codes(card)

    def test_unlateralised_pelvic_varices_join_a_leg_card(self) -> None:
        result = run(ceap("C2r"), condition("I86.2", onset=day(30)))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "left"
        assert "Suprapubic or pelvic varices" in card["detail"]

    def test_unlateralised_ceap_gives_no_r18(self) -> None:
        assert _r18(observation("ceap-c", value="C2r")) == []


class TestR18Gates:
    def test_not_on_order_hooks(self) -> None:
        assert _r18(ceap("C2r"), hook="order-sign") == []

    def test_suppressed_during_active_dvt(self) -> None:
        assert _r18(ceap("C2r"), condition("I82.412", onset=day(3))) == []

    def test_suppressed_by_bilateral_symptoms_with_systemic_cause(self) -> None:
        resources = (*swelling("bilateral"), condition("I50.9"), ceap("C2r"))
        assert _r18(*resources) == []

    def test_not_on_a_stented_leg(self) -> None:
        assert _r18(*stent("left", 30), ceap("C2r")) == []

    def test_not_after_recent_ivus(self) -> None:
        ivus = procedure("37252", side="left", site=CIV, date=day(30))
        assert _r18(ceap("C2r"), ivus) == []

    def test_not_with_a_pelvic_mass_on_that_side(self) -> None:
        mass = condition("4147007", system=SCT, site="12921003", side="left")
        assert _r18(ceap("C2r"), mass) == []

    def test_not_when_iliac_compression_is_already_documented(self) -> None:
        # Symptomatic leg (C6), so R12b does not fire: the gate itself keeps R18 quiet (R08 owns this leg).
        compression = condition("I87.1", site=CIV, side="left")
        assert len(_r18(ceap("C6"), reflux("absent"))) == 1
        assert _r18(ceap("C6"), reflux("absent"), compression) == []

    def test_other_leg_still_gets_its_card(self) -> None:
        result = run(ceap("C2r", "right"), condition("I82.412", onset=day(3)))
        (card,) = cards_of(result, "R18")
        assert side_of(result, card) == "right"

    @pytest.mark.parametrize("rule", ["R12b", "R02", "R03"])
    def test_card_suppression_by_rules_on_the_same_side(self, rule: str) -> None:
        facts = extract_facts(
            resources=(), draft_orders=(), selections=(), catalog=catalog(), now=NOW
        )
        ctx = RuleContext(
            "patient-view",
            NOW,
            facts,
            Derived(facts, catalog(), NOW),
            catalog(),
            frozenset(),
        )
        r18 = Finding("R18", Side.LEFT)
        same = Finding(rule, Side.LEFT)
        other = Finding(rule, Side.RIGHT)
        assert apply_suppression([r18, same], ctx) == [same]
        assert apply_suppression([r18, other], ctx) == [r18, other]
