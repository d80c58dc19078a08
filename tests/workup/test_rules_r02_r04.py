"""R02, R03, R04a, R04b: pelvic imaging after leg ultrasound."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    SCT,
    cards_of,
    condition,
    day,
    imaging_study,
    negative_duplex,
    observation,
    report,
    run,
    service_request,
    side_of,
)

LEFT_SWELLING = condition("R22.42", onset=day(20), id="sw")


def whole_leg(side: str = "left", days_ago: int = 2) -> JsonObject:
    return observation(
        "swelling-extent", value="whole-leg", side=side, date=day(days_ago)
    )


class TestR02:
    def test_whole_leg_swelling_after_negative_duplex(self) -> None:
        result = run(LEFT_SWELLING, whole_leg(), negative_duplex("left", days_ago=5))
        (card,) = cards_of(result, "R02")
        assert (
            card["summary"]
            == "Negative leg duplex does not exclude iliac DVT: order CT or MR venography of the pelvis."
        )
        assert card["selectionBehavior"] == "at-most-one"
        codes = [
            s["actions"][0]["resource"]["code"]["coding"][0]["code"]
            for s in card["suggestions"]
        ]
        assert codes == ["72191", "72198"]
        assert side_of(result, card) == "left"

    def test_below_knee_swelling_does_not_fire(self) -> None:
        below = observation(
            "swelling-extent", value="below-knee", side="left", date=day(2)
        )
        assert cards_of(run(LEFT_SWELLING, below, negative_duplex("left")), "R02") == []

    def test_recent_pelvic_ctv_stops_it(self) -> None:
        ctv = report("30623-3", date=day(90))
        assert (
            cards_of(
                run(LEFT_SWELLING, whole_leg(), negative_duplex("left"), ctv), "R02"
            )
            == []
        )

    def test_ctv_91_days_old_does_not(self) -> None:
        ctv = report("30623-3", date=day(91))
        assert (
            len(
                cards_of(
                    run(LEFT_SWELLING, whole_leg(), negative_duplex("left"), ctv), "R02"
                )
            )
            == 1
        )

    def test_pelvic_ct_imaging_study_stops_it(self) -> None:
        ct = imaging_study("CT", site="816092008", started=day(10))
        assert (
            cards_of(
                run(LEFT_SWELLING, whole_leg(), negative_duplex("left"), ct), "R02"
            )
            == []
        )

    def test_bilateral_presentation_goes_to_r04a(self) -> None:
        right = condition("R22.41", onset=day(20))
        assert (
            cards_of(
                run(LEFT_SWELLING, right, whole_leg(), negative_duplex("bilateral")),
                "R02",
            )
            == []
        )

    def test_pregnancy_offers_non_contrast_mrv_first(self) -> None:
        result = run(
            LEFT_SWELLING, whole_leg(), negative_duplex("left"), condition("Z3A.30")
        )
        (card,) = cards_of(result, "R02")
        first = card["suggestions"][0]["actions"][0]["resource"]
        assert first["code"]["coding"][0]["code"] == "72198"
        assert "without contrast" in first["code"]["text"]

    def test_unlateralised_duplex_with_sided_symptom(self) -> None:
        duplex = report("30881-7", conclusion=[(SCT, "373140001")], date=day(3))
        result = run(LEFT_SWELLING, whole_leg(), duplex)
        assert len(cards_of(result, "R02")) == 1
        assert len(cards_of(result, "R00a")) == 1


class TestR03:
    def test_non_phasic_cfv(self) -> None:
        cfv = observation(
            "cfv-waveform",
            value="non-phasic-continuous",
            side="right",
            site="397363009",
            date=day(4),
        )
        result = run(condition("R22.41", onset=day(10)), cfv)
        (card,) = cards_of(result, "R03")
        assert (
            card["summary"]
            == "Non-phasic right common femoral vein flow suggests proximal obstruction: image the pelvis (CTV or MRV)."
        )
        assert side_of(result, card) == "right"

    def test_pulsatile_is_not_abnormal(self) -> None:
        cfv = observation("cfv-waveform", value="pulsatile", side="right", date=day(4))
        assert cards_of(run(cfv), "R03") == []

    def test_absent_flow_with_known_thrombus_is_dvt_not_r03(self) -> None:
        cfv = observation("cfv-waveform", value="absent-flow", side="left", date=day(4))
        assert cards_of(run(cfv, condition("I82.412", onset=day(4))), "R03") == []

    def test_waveform_older_than_30_days(self) -> None:
        cfv = observation(
            "cfv-waveform", value="non-phasic-continuous", side="left", date=day(31)
        )
        assert cards_of(run(cfv), "R03") == []

    def test_unsided_waveform_with_sided_symptom_names_no_side(self) -> None:
        cfv = observation("cfv-waveform", value="non-phasic-continuous", date=day(2))
        result = run(condition("R22.42", onset=day(10)), cfv)
        (card,) = cards_of(result, "R03")
        assert (
            card["summary"]
            == "Non-phasic common femoral vein flow suggests proximal obstruction: image the pelvis (CTV or MRV)."
        )
        assert side_of(result, card) == "left"

    def test_unsided_waveform_without_symptom(self) -> None:
        cfv = observation("cfv-waveform", value="non-phasic-continuous", date=day(2))
        assert cards_of(run(cfv), "R03") == []


def iliac_adequate(days_ago: int = 5) -> list[JsonObject]:
    return [
        observation(
            "iliac-visualization",
            value="adequate",
            side="bilateral",
            date=day(days_ago),
        ),
        report(
            "93978",
            system="http://www.ama-assn.org/go/cpt",
            conclusion=[(SCT, "373140001")],
            date=day(days_ago),
        ),
    ]


BILATERAL = condition("R22.43", onset=day(20))


class TestR04a:
    def test_bilateral_symptoms_negative_iliac_us(self) -> None:
        result = run(BILATERAL, *iliac_adequate())
        (card,) = cards_of(result, "R04a")
        assert side_of(result, card) == "bilateral"
        assert len(card["suggestions"]) == 2

    def test_limited_visualisation_does_not_fire(self) -> None:
        limited = observation(
            "iliac-visualization", value="limited", side="bilateral", date=day(5)
        )
        dr = iliac_adequate()[1]
        assert cards_of(run(BILATERAL, limited, dr), "R04a") == []

    def test_systemic_cause_suppresses(self) -> None:
        assert (
            cards_of(run(BILATERAL, condition("I50.22"), *iliac_adequate()), "R04a")
            == []
        )

    def test_systemic_cause_with_abnormal_cfv_still_fires(self) -> None:
        cfv = observation(
            "cfv-waveform", value="non-phasic-continuous", side="left", date=day(5)
        )
        assert (
            len(
                cards_of(
                    run(BILATERAL, condition("I50.22"), cfv, *iliac_adequate()), "R04a"
                )
            )
            == 1
        )


class TestR04b:
    def _drafts(self, side: str = "bilateral") -> tuple[JsonObject, ...]:
        code = "93970" if side == "bilateral" else "93971"
        return (
            service_request(
                code,
                side=side if side != "bilateral" else None,
                sites=("61685007",) if side != "bilateral" else (),
                id="us1",
            ),
        )

    def test_repeat_duplex_after_adequate_negative(self) -> None:
        result = run(
            BILATERAL,
            *iliac_adequate(10),
            hook="order-select",
            drafts=self._drafts(),
            selections=("ServiceRequest/us1",),
        )
        (card,) = cards_of(result, "R04b")
        assert (
            card["summary"]
            == f"Repeat ultrasound adds little after an adequate negative iliac study on {day(10)}; order CTV or MRV instead."
        )
        actions = card["suggestions"][0]["actions"]
        assert actions[0] == {
            "type": "delete",
            "description": "Remove the draft repeat ultrasound",
            "resourceId": "ServiceRequest/us1",
        }

    def test_new_swelling_since_study(self) -> None:
        new = condition("R22.42", onset=day(2))
        assert (
            cards_of(
                run(
                    BILATERAL,
                    new,
                    *iliac_adequate(10),
                    hook="order-sign",
                    drafts=self._drafts(),
                ),
                "R04b",
            )
            == []
        )

    def test_study_older_than_30_days(self) -> None:
        old = condition("R22.43", onset=day(60))
        assert (
            cards_of(
                run(old, *iliac_adequate(31), hook="order-sign", drafts=self._drafts()),
                "R04b",
            )
            == []
        )
