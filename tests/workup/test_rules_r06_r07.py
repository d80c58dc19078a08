"""R06 systemic causes of edema; R07a uncharacterised pelvic mass; R07b compression by a characterised mass."""

from __future__ import annotations

import pytest

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    CPT,
    SCT,
    Card,
    cards_of,
    condition,
    day,
    device_request,
    lab,
    negative_duplex,
    observation,
    report,
    run,
    service_request,
    side_of,
    stent_order,
)

HF = condition("I50.9")
BILATERAL_EDEMA = condition("R22.43", site="61685007", side="bilateral", onset=day(40))
LEFT_EDEMA = condition("R22.42", site="61685007", side="left", onset=day(40))
R06_SUMMARY = "Edema with {}: exclude systemic causes first; bilateral edema is rarely due to iliac vein compression."


def _r(rule: str, *resources: JsonObject, hook: str = "patient-view") -> list[Card]:
    return cards_of(run(*resources, hook=hook), rule)


def albumin(value: float, unit: str = "g/dL", days_ago: int = 10) -> JsonObject:
    return lab("1751-7", quantity=(value, unit), date=day(days_ago))


def iliac_us(side: str, *, cfv: str = "phasic") -> list[JsonObject]:
    """An adequate negative iliac duplex of one leg, with its CFV waveform."""
    code = {"left": "39432-0", "right": "39443-7"}[side]
    return [
        observation(
            "iliac-visualization",
            value="adequate",
            site="244411005",
            side=side,
            date=day(8),
        ),
        observation(
            code,
            system="http://loinc.org",
            value="373140001",
            value_system=SCT,
            site="46027005",
            side=side,
            date=day(8),
        ),
        observation(
            "cfv-waveform", value=cfv, site="397363009", side=side, date=day(8)
        ),
        report(code, conclusion=[(SCT, "373140001")], date=day(8)),
    ]


class TestR06PatientView:
    def test_bilateral_edema_with_heart_failure_is_warning(self) -> None:
        result = run(BILATERAL_EDEMA, HF)
        (card,) = cards_of(result, "R06")
        assert card["indicator"] == "warning"
        assert card["summary"] == R06_SUMMARY.format("heart failure")
        assert side_of(result, card) == "bilateral"

    def test_edema_on_both_legs_separately_is_bilateral(self) -> None:
        right = condition("R22.41", site="61685007", side="right", onset=day(20))
        (card,) = _r("R06", LEFT_EDEMA, right, HF)
        assert card["indicator"] == "warning"

    def test_unilateral_edema_with_ckd_is_info(self) -> None:
        result = run(LEFT_EDEMA, condition("N18.4"))
        (card,) = cards_of(result, "R06")
        assert card["indicator"] == "info"
        assert card["summary"] == R06_SUMMARY.format("chronic kidney disease")
        assert side_of(result, card) == "left"

    def test_right_unilateral_lymphedema(self) -> None:
        right = condition("R22.41", site="61685007", side="right", onset=day(20))
        result = run(right, condition("I89.0"))
        (card,) = cards_of(result, "R06")
        assert (card["indicator"], side_of(result, card)) == ("info", "right")
        assert card["summary"] == R06_SUMMARY.format("lymphedema")

    @pytest.mark.parametrize(
        ("value", "unit", "fires"),
        [
            (2.9, "g/dL", True),
            (3.0, "g/dL", False),
            (29, "g/L", True),
            (30, "g/L", False),
        ],
    )
    def test_albumin_threshold(self, value: float, unit: str, fires: bool) -> None:
        cards = _r("R06", BILATERAL_EDEMA, albumin(value, unit))
        assert bool(cards) is fires
        if fires:
            assert cards[0]["summary"] == R06_SUMMARY.format("low albumin 2.9 g/dL")

    def test_stale_albumin_is_ignored(self) -> None:
        assert _r("R06", BILATERAL_EDEMA, albumin(2.4, days_ago=400)) == []

    def test_cause_is_the_first_in_spec_order(self) -> None:
        (card,) = _r("R06", BILATERAL_EDEMA, albumin(2.5), condition("K74.60"), HF)
        assert card["summary"] == R06_SUMMARY.format("heart failure")
        assert "low albumin 2.5 g/dL" in card["detail"]
        assert "liver disease" in card["detail"]

    def test_no_edema_no_card(self) -> None:
        assert _r("R06", HF, condition("M79.605")) == []

    def test_no_cause_no_card(self) -> None:
        assert _r("R06", BILATERAL_EDEMA) == []

    def test_resolved_cause_no_card(self) -> None:
        assert _r("R06", BILATERAL_EDEMA, condition("I50.9", clinical="resolved")) == []

    def test_suggests_missing_labs_only(self) -> None:
        (card,) = _r("R06", BILATERAL_EDEMA, HF)
        codes = [
            s["actions"][0]["resource"]["code"]["coding"][0]["code"]
            for s in card["suggestions"]
        ]
        assert codes == ["1751-7", "2160-0"]
        assert card["selectionBehavior"] == "any"
        (card,) = _r("R06", BILATERAL_EDEMA, HF, albumin(3.5))
        codes = [
            s["actions"][0]["resource"]["code"]["coding"][0]["code"]
            for s in card["suggestions"]
        ]
        assert codes == ["2160-0"]
        creatinine = lab("2160-0", quantity=(1.0, "mg/dL"), date=day(5))
        (card,) = _r("R06", BILATERAL_EDEMA, HF, albumin(3.5), creatinine)
        assert "suggestions" not in card

    def test_suppresses_r04a_when_cfv_normal(self) -> None:
        resources = [BILATERAL_EDEMA, *iliac_us("left"), *iliac_us("right")]
        assert len(_r("R04a", *resources)) == 1
        result = run(*resources, HF)
        assert cards_of(result, "R04a") == []
        assert cards_of(result, "R06")[0]["indicator"] == "warning"

    def test_r04a_not_suppressed_when_cfv_abnormal(self) -> None:
        resources = [
            BILATERAL_EDEMA,
            HF,
            *iliac_us("left", cfv="non-phasic-continuous"),
            *iliac_us("right", cfv="non-phasic-continuous"),
        ]
        result = run(*resources)
        assert len(cards_of(result, "R04a")) == 1
        assert len(cards_of(result, "R06")) == 1

    def test_does_not_suppress_r01(self) -> None:
        result = run(BILATERAL_EDEMA, HF)
        assert cards_of(result, "R01") != []


class TestR06OrderHooks:
    def _drafts(self) -> tuple[JsonObject, ...]:
        return (
            service_request("75822", side="bilateral", id="ven"),
            service_request("37252", side="bilateral", sites=("46027005",), id="ivus"),
        )

    @pytest.mark.parametrize("hook", ["order-select", "order-sign"])
    def test_bilateral_edema_invasive_draft_warns(self, hook: str) -> None:
        result = run(
            BILATERAL_EDEMA,
            condition("K74.60"),
            hook=hook,
            drafts=self._drafts(),
            selections=("ServiceRequest/ven", "ServiceRequest/ivus"),
        )
        (card,) = cards_of(result, "R06")
        assert card["indicator"] == "warning"
        assert card["summary"] == R06_SUMMARY.format("liver disease")

    def test_unilateral_edema_on_order_hook_no_card(self) -> None:
        result = run(LEFT_EDEMA, HF, hook="order-sign", drafts=self._drafts())
        assert cards_of(result, "R06") == []

    def test_non_invasive_draft_no_card(self) -> None:
        duplex = service_request("93970", side="bilateral", sites=("61685007",))
        result = run(BILATERAL_EDEMA, HF, hook="order-sign", drafts=(duplex,))
        assert cards_of(result, "R06") == []

    def test_unselected_draft_no_card(self) -> None:
        result = run(
            BILATERAL_EDEMA,
            HF,
            hook="order-select",
            drafts=self._drafts(),
            selections=("ServiceRequest/other",),
        )
        assert cards_of(result, "R06") == []


def pelvic_mass(side: str | None = "left") -> JsonObject:
    return condition("R19.00", site="12921003", side=side, onset=day(15))


def contrast_ct(days_ago: int = 20) -> JsonObject:
    return report(
        "74177", system=CPT, conclusion=[(SCT, "415582006")], date=day(days_ago)
    )


def lymphoma(side: str | None = "left") -> JsonObject:
    return condition("C83.36", site="54268001", side=side, onset=day(30))


def extrinsic(side: str = "left") -> JsonObject:
    return observation(
        "obstruction-etiology",
        value="extrinsic-mass",
        site="46027005",
        side=side,
        date=day(20),
    )


def _codes(card: Card, index: int) -> list[str]:
    return [
        coding["code"]
        for action in card["suggestions"][index]["actions"]
        for coding in action["resource"]["code"]["coding"]
    ]


class TestR07a:
    def test_uncharacterised_left_mass_warns_with_ct_or_mri(self) -> None:
        result = run(pelvic_mass(), LEFT_EDEMA, negative_duplex("left"))
        (card,) = cards_of(result, "R07a")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Pelvic mass near the left iliac vein: characterize with contrast CT or MRI; exclude DVT."
        )
        assert side_of(result, card) == "left"
        assert card["selectionBehavior"] == "at-most-one"
        assert _codes(card, 0) == ["74177", "36267-3"]
        assert _codes(card, 1) == ["72197", "30674-6"]

    def test_dvt_not_excluded_adds_the_duplex(self) -> None:
        (card,) = _r("R07a", pelvic_mass())
        assert "93971" in _codes(card, 0)
        assert "93971" in _codes(card, 1)

    def test_right_side(self) -> None:
        result = run(pelvic_mass("right"))
        (card,) = cards_of(result, "R07a")
        assert side_of(result, card) == "right"

    @pytest.mark.parametrize(("days_ago", "fires"), [(90, False), (91, True)])
    def test_contrast_imaging_window(self, days_ago: int, fires: bool) -> None:
        assert bool(_r("R07a", pelvic_mass(), contrast_ct(days_ago))) is fires

    def test_non_contrast_mri_does_not_characterise(self) -> None:
        mri = report("30673-8", conclusion=[(SCT, "4147007")], date=day(10))
        assert len(_r("R07a", pelvic_mass(), mri)) == 1

    def test_tissue_diagnosis_no_card(self) -> None:
        assert _r("R07a", pelvic_mass(), lymphoma()) == []

    def test_unsided_mass_names_no_side(self) -> None:
        result = run(pelvic_mass(None))
        (card,) = cards_of(result, "R07a")
        assert side_of(result, card) is None
        assert card["summary"].startswith("Pelvic mass near the iliac vein:")

    def test_no_mass_no_card(self) -> None:
        assert _r("R07a", LEFT_EDEMA) == []

    def test_patient_view_only(self) -> None:
        result = run(pelvic_mass(), hook="order-sign", drafts=(stent_order("left"),))
        assert cards_of(result, "R07a") == []


class TestR07b:
    def test_patient_view_info(self) -> None:
        result = run(lymphoma(), extrinsic(), contrast_ct(), LEFT_EDEMA)
        (card,) = cards_of(result, "R07b")
        assert card["indicator"] == "info"
        assert (
            card["summary"]
            == "Left iliac vein compressed by lymphoma: treat the underlying mass; stent only as a temporizing measure."
        )
        assert side_of(result, card) == "left"
        assert "not May-Thurner" in card["detail"]
        assert cards_of(result, "R07a") == []

    def test_right_bursitis(self) -> None:
        bursitis = condition("M71.551", onset=day(60))
        result = run(bursitis, extrinsic("right"))
        (card,) = cards_of(result, "R07b")
        assert side_of(result, card) == "right"
        assert "iliopsoas bursitis" in card["summary"]

    def test_characterised_by_contrast_imaging_only(self) -> None:
        (card,) = _r("R07b", extrinsic(), contrast_ct())
        assert "compressed by an extrinsic mass" in card["summary"]

    def test_extrinsic_mass_not_yet_characterised_goes_to_r07a(self) -> None:
        result = run(extrinsic())
        assert cards_of(result, "R07b") == []
        assert len(cards_of(result, "R07a")) == 1

    def test_mass_without_attributed_obstruction_no_card(self) -> None:
        assert _r("R07b", lymphoma()) == []

    def test_mass_with_compression_on_imaging(self) -> None:
        ct = report("74177", system=CPT, conclusion=[(SCT, "71173004")], date=day(10))
        compression = observation(
            "396339007",
            system=SCT,
            value="71173004",
            value_system=SCT,
            site="46027005",
            side="left",
            date=day(10),
        )
        assert len(_r("R07b", lymphoma(), compression, ct)) == 1

    @pytest.mark.parametrize("hook", ["order-select", "order-sign"])
    def test_stent_draft_is_warning(self, hook: str) -> None:
        result = run(
            lymphoma(),
            extrinsic(),
            hook=hook,
            drafts=(
                stent_order("left", id="s1"),
                device_request("ServiceRequest/s1", id="d1"),
            ),
            selections=("DeviceRequest/d1",),
        )
        (card,) = cards_of(result, "R07b")
        assert card["indicator"] == "warning"
        assert side_of(result, card) == "left"

    def test_stent_on_other_side_no_card(self) -> None:
        result = run(
            lymphoma(), extrinsic(), hook="order-sign", drafts=(stent_order("right"),)
        )
        assert cards_of(result, "R07b") == []

    def test_order_hook_without_stent_no_card(self) -> None:
        duplex = service_request("93971", side="left", sites=("61685007",))
        result = run(lymphoma(), extrinsic(), hook="order-sign", drafts=(duplex,))
        assert cards_of(result, "R07b") == []

    def test_nivl_etiology_no_card(self) -> None:
        nivl = observation(
            "obstruction-etiology",
            value="nivl",
            site="46027005",
            side="left",
            date=day(5),
        )
        assert _r("R07b", nivl, contrast_ct()) == []
