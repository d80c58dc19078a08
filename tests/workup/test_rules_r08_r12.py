"""R08 (imaging alone never drives treatment), R12a and R12b (symptom gate)."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    DCM,
    ICD,
    LOCAL,
    LOINC,
    SCT,
    Card,
    all_cards,
    cards_of,
    condition,
    day,
    observation,
    procedure,
    report,
    run,
    service_request,
    side_of,
    stent_order,
)

IVUS_METHOD = (SCT, "241466007")
CIV = "46027005"
SWELLING = {"left": "R22.42", "right": "R22.41"}


def symptoms(side: str = "left") -> JsonObject:
    return condition(SWELLING[side], onset=day(200))


def ct_compression(
    side: str = "left", *, percent: float = 70, days_ago: int = 15, method: str = "CT"
) -> JsonObject:
    """CT/MR % compression: SNOMED 408715008 with a CT/MR method (never IVUS, terminology §5)."""
    return observation(
        "408715008",
        system=SCT,
        quantity=(percent, "%"),
        side=side,
        site=CIV,
        method=(DCM, method),
        date=day(days_ago),
    )


def ivus(side: str = "left", days_ago: int = 10) -> JsonObject:
    return procedure("37252", side=side, site=CIV, date=day(days_ago))


def ceap(value: str, side: str = "left") -> JsonObject:
    return observation("ceap-c", value=value, side=side, date=day(20))


def villalta(score: int, side: str = "left") -> JsonObject:
    return observation("villalta-total", number=score, side=side, date=day(20))


def _sign(*resources: JsonObject, drafts: tuple[JsonObject, ...]) -> list[Card]:
    return all_cards(run(*resources, hook="order-sign", drafts=drafts))


def _ids(cards: list[Card]) -> list[str]:
    return [c["source"]["topic"]["code"] for c in cards]


def _created_codes(card: Card) -> list[str]:
    return [
        coding["code"]
        for suggestion in card["suggestions"]
        for action in suggestion["actions"]
        for coding in action["resource"]["code"]["coding"]
    ]


class TestR08PatientView:
    def test_symptomatic_ct_compression_without_ivus(self) -> None:
        result = run(symptoms(), ct_compression())
        (card,) = cards_of(result, "R08")
        assert card["indicator"] == "info"
        assert (
            card["summary"]
            == "CT/MR shows left iliac compression; confirm with venography + IVUS before any intervention."
        )
        assert side_of(result, card) == "left"
        assert card["source"]["label"] == "R08 · SEED-001, SIR-2023"
        codes = _created_codes(card)
        assert {"75820", "26065-3", "37252", "241466007"} <= set(codes)
        assert "CT 70 % diameter reduction" in card["detail"]

    def test_right_leg(self) -> None:
        result = run(symptoms("right"), ct_compression("right", method="MR"))
        (card,) = cards_of(result, "R08")
        assert side_of(result, card) == "right"
        assert "MR 70 % diameter reduction" in card["detail"]

    def test_both_legs_merge_into_one_bilateral_card(self) -> None:
        result = run(
            symptoms("left"),
            symptoms("right"),
            ct_compression("left"),
            ct_compression("right"),
        )
        (card,) = cards_of(result, "R08")
        assert side_of(result, card) == "bilateral"
        assert "75822" in _created_codes(card)

    def test_ct_compression_is_never_called_significant(self) -> None:
        for result in (run(symptoms(), ct_compression()), run(ct_compression())):
            for card in cards_of(result, "R08") + cards_of(result, "R12b"):
                text = f"{card['summary']} {card['detail']}".lower()
                assert "significant" not in text

    def test_asymptomatic_leg_gets_r12b_not_r08(self) -> None:
        result = run(ct_compression())
        assert cards_of(result, "R08") == []
        assert len(cards_of(result, "R12b")) == 1

    def test_contralateral_symptoms_do_not_count(self) -> None:
        assert cards_of(run(symptoms("right"), ct_compression("left")), "R08") == []

    def test_ivus_within_90_days_confirms(self) -> None:
        assert (
            cards_of(run(symptoms(), ct_compression(), ivus(days_ago=90)), "R08") == []
        )

    def test_ivus_91_days_old_does_not_confirm(self) -> None:
        result = run(symptoms(), ct_compression(), ivus(days_ago=91))
        assert len(cards_of(result, "R08")) == 1

    def test_contralateral_ivus_does_not_confirm(self) -> None:
        result = run(symptoms(), ct_compression(), ivus("right"))
        assert len(cards_of(result, "R08")) == 1

    def test_recent_venogram_leaves_only_ivus(self) -> None:
        veno = procedure("75820", side="left", site=CIV, date=day(20))
        (card,) = cards_of(run(symptoms(), ct_compression(), veno), "R08")
        assert _created_codes(card) == ["37252", "241466007"]

    def test_ivus_measured_stenosis_is_not_cross_sectional_evidence(self) -> None:
        ivus_ds = observation(
            "408715008",
            system=SCT,
            quantity=(70, "%"),
            side="left",
            site=CIV,
            method=IVUS_METHOD,
            date=day(100),
        )
        assert cards_of(run(symptoms(), ivus_ds), "R08") == []

    def test_iliac_duplex_stenosis_counts(self) -> None:
        duplex = observation(
            "24870-8",
            system=LOINC,
            value="415582006",
            value_system=SCT,
            side="left",
            site=CIV,
            date=day(10),
        )
        assert len(cards_of(run(symptoms(), duplex), "R08")) == 1

    def test_report_without_side_is_not_attributed(self) -> None:
        unsided = report("30623-3", conclusion=[(SCT, "415582006")], date=day(10))
        assert cards_of(run(symptoms(), unsided), "R08") == []

    def test_stenosis_outside_iliac_veins_is_ignored(self) -> None:
        femoral = observation(
            "408715008",
            system=SCT,
            quantity=(70, "%"),
            side="left",
            site="83419000",
            method=(DCM, "CT"),
        )
        assert cards_of(run(symptoms(), femoral), "R08") == []

    def test_active_dvt_suppresses(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        assert cards_of(run(symptoms(), ct_compression(), dvt), "R08") == []

    def test_pelvic_mass_stops_it(self) -> None:
        mass = condition("R19.09", side="left")
        assert cards_of(run(symptoms(), ct_compression(), mass), "R08") == []

    def test_bilateral_edema_with_systemic_cause_suppresses(self) -> None:
        hf = condition("I50.9")
        result = run(symptoms("left"), symptoms("right"), ct_compression(), hf)
        assert cards_of(result, "R08") == []

    def test_systemic_cause_with_abnormal_cfv_does_not_suppress(self) -> None:
        hf = condition("I50.9")
        cfv = observation(
            "cfv-waveform",
            value="non-phasic-continuous",
            side="left",
            site="397363009",
            date=day(3),
        )
        result = run(symptoms("left"), symptoms("right"), ct_compression(), hf, cfv)
        assert len(cards_of(result, "R08")) == 1


class TestR08OrderHooks:
    def test_stent_draft_gets_r09_and_no_second_card(self) -> None:
        cards = _sign(symptoms(), ct_compression(), drafts=(stent_order("left"),))
        assert "R09" in _ids(cards)
        assert "R08" not in _ids(cards)

    def test_venoplasty_on_ct_alone(self) -> None:
        plasty = service_request("37248", side="left", sites=(CIV,), id="vp1")
        result = run(symptoms(), ct_compression(), hook="order-sign", drafts=(plasty,))
        (card,) = cards_of(result, "R08")
        assert side_of(result, card) == "left"
        assert "R09" not in _ids(all_cards(result))

    def test_venoplasty_with_ivus_drafted(self) -> None:
        plasty = service_request("37248", side="left", sites=(CIV,))
        ivus_order = service_request("37252", side="left", sites=(CIV,))
        cards = _sign(symptoms(), ct_compression(), drafts=(plasty, ivus_order))
        assert "R08" not in _ids(cards)

    def test_order_select_only_for_the_selected_draft(self) -> None:
        plasty = service_request("37248", side="left", sites=(CIV,), id="vp2")
        other = service_request("93971", side="left", id="dup2")
        unselected = run(
            symptoms(),
            ct_compression(),
            hook="order-select",
            drafts=(plasty, other),
            selections=("ServiceRequest/dup2",),
        )
        assert cards_of(unselected, "R08") == []
        selected = run(
            symptoms(),
            ct_compression(),
            hook="order-select",
            drafts=(plasty, other),
            selections=("ServiceRequest/vp2",),
        )
        assert len(cards_of(selected, "R08")) == 1

    def test_no_card_without_a_treatment_draft(self) -> None:
        duplex = service_request("93971", side="left")
        assert "R08" not in _ids(_sign(symptoms(), ct_compression(), drafts=(duplex,)))


class TestR12a:
    def test_stent_for_asymptomatic_leg_is_critical(self) -> None:
        result = run(hook="order-sign", drafts=(stent_order("left"),))
        (card,) = cards_of(result, "R12a")
        assert card["indicator"] == "critical"
        assert (
            card["summary"]
            == "No qualifying venous symptoms on the left leg: prophylactic iliac vein stenting is inappropriate."
        )
        assert side_of(result, card) == "left"
        assert [r["display"] for r in card["overrideReasons"]] == [
            "Symptoms not yet coded",
            "Post-thrombotic obstruction with documented disability",
        ]

    def test_right_leg(self) -> None:
        result = run(
            symptoms("left"), hook="order-sign", drafts=(stent_order("right"),)
        )
        (card,) = cards_of(result, "R12a")
        assert side_of(result, card) == "right"

    def test_bilateral_stent_one_card_per_leg(self) -> None:
        result = run(hook="order-sign", drafts=(stent_order("bilateral"),))
        sides = sorted(str(side_of(result, c)) for c in cards_of(result, "R12a"))
        assert sides == ["left", "right"]

    def test_symptomatic_leg_passes(self) -> None:
        cards = _sign(symptoms(), drafts=(stent_order("left"),))
        assert "R12a" not in _ids(cards)

    def test_ceap_c2_varicose_only_fires(self) -> None:
        varicose = condition("I83.92")
        cards = _sign(ceap("C2"), varicose, drafts=(stent_order("left"),))
        assert "R12a" in _ids(cards)

    def test_varicose_veins_with_moderate_qol_impact_pass(self) -> None:
        qol = observation("qol-impact", value="moderate", side="left")
        cards = _sign(condition("I83.812"), qol, drafts=(stent_order("left"),))
        assert "R12a" not in _ids(cards)

    def test_ceap_c3_passes(self) -> None:
        assert "R12a" not in _ids(_sign(ceap("C3"), drafts=(stent_order("left"),)))

    def test_villalta_boundary(self) -> None:
        assert "R12a" not in _ids(_sign(villalta(5), drafts=(stent_order("left"),)))
        assert "R12a" in _ids(_sign(villalta(4), drafts=(stent_order("left"),)))

    def test_genital_edema_counts_as_symptom(self) -> None:
        genital = condition("genital-edema", system=LOCAL, side="left")
        assert "R12a" not in _ids(_sign(genital, drafts=(stent_order("left"),)))

    def test_still_returned_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = _sign(dvt, drafts=(stent_order("left"),))
        assert "R12a" in _ids(cards)

    def test_order_select_checks_the_selected_stent_only(self) -> None:
        drafts = (stent_order("left", id="s1"), service_request("93971", id="o1"))
        picked = run(
            hook="order-select", drafts=drafts, selections=("ServiceRequest/o1",)
        )
        assert cards_of(picked, "R12a") == []

    def test_order_select_and_sign_both_return_it(self) -> None:
        drafts = (stent_order("left", id="s2"),)
        for hook in ("order-select", "order-sign"):
            result = run(hook=hook, drafts=drafts, selections=("ServiceRequest/s2",))
            assert len(cards_of(result, "R12a")) == 1

    def test_not_on_patient_view(self) -> None:
        assert cards_of(run(ct_compression()), "R12a") == []


class TestR12b:
    def test_incidental_compression_without_symptoms(self) -> None:
        result = run(ct_compression(percent=60))
        (card,) = cards_of(result, "R12b")
        assert card["indicator"] == "info"
        assert (
            card["summary"]
            == "Incidental left iliac vein compression without symptoms is common; no further workup or stent needed."
        )
        assert side_of(result, card) == "left"
        assert "suggestions" not in card
        assert cards_of(result, "R08") == []

    def test_right_leg(self) -> None:
        result = run(ct_compression("right", method="MR"))
        (card,) = cards_of(result, "R12b")
        assert side_of(result, card) == "right"

    def test_symptomatic_leg_does_not_get_it(self) -> None:
        assert cards_of(run(symptoms(), ct_compression()), "R12b") == []

    def test_prior_dvt_on_that_leg(self) -> None:
        old = condition("I82.422", onset=day(1000), clinical="resolved")
        assert cards_of(run(old, ct_compression()), "R12b") == []

    def test_unsided_vte_history_counts_for_both_legs(self) -> None:
        history = condition("Z86.718", system=ICD)
        assert cards_of(run(history, ct_compression()), "R12b") == []

    def test_dvt_history_on_the_other_leg_does_not_count(self) -> None:
        old = condition("I82.421", onset=day(1000), clinical="resolved")
        assert len(cards_of(run(old, ct_compression("left")), "R12b")) == 1

    def test_active_dvt_suppresses(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        assert cards_of(run(dvt, ct_compression()), "R12b") == []

    def test_pelvic_mass_is_not_incidental(self) -> None:
        mass = condition("R19.09", side="left")
        assert cards_of(run(mass, ct_compression()), "R12b") == []

    def test_stented_leg_is_not_incidental(self) -> None:
        stent = procedure("37238", side="left", site=CIV, date=day(100))
        assert cards_of(run(stent, ct_compression()), "R12b") == []

    def test_ivus_measurement_is_not_incidental_imaging(self) -> None:
        ivus_ds = observation(
            "408715008",
            system=SCT,
            quantity=(60, "%"),
            side="left",
            site=CIV,
            method=IVUS_METHOD,
        )
        assert cards_of(run(ivus_ds), "R12b") == []

    def test_not_on_order_hooks(self) -> None:
        cards = _sign(ct_compression(), drafts=(service_request("93971", side="left"),))
        assert "R12b" not in _ids(cards)
