"""R00a-R00d: laterality, units, stale results, conflicting results."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    ICD,
    SCT,
    cards_of,
    condition,
    day,
    device_request,
    negative_duplex,
    observation,
    procedure,
    report,
    run,
    side_of,
    stent_order,
)


class TestR00aLaterality:
    def test_unlateralised_symptom_gets_a_card_and_no_side_guidance(self) -> None:
        result = run(condition("102572006", system=SCT, onset=day(5), id="c1"))
        (card,) = cards_of(result, "R00a")
        assert card["indicator"] == "warning"
        assert "leg swelling (Condition)" in str(card["summary"])
        assert side_of(result, card) is None
        assert cards_of(result, "R01") == []

    def test_one_card_per_resource(self) -> None:
        result = run(
            condition("102572006", system=SCT, onset=day(5)),
            observation("cfv-waveform", value="non-phasic-continuous"),
        )
        assert len(cards_of(result, "R00a")) == 2

    def test_lateralised_fact_gets_no_card(self) -> None:
        assert cards_of(run(condition("R22.42", onset=day(5))), "R00a") == []

    def test_unsided_stent_draft_pauses_r09(self) -> None:
        result = run(hook="order-sign", drafts=(stent_order(None),))
        assert len(cards_of(result, "R00a")) == 1
        assert cards_of(result, "R09") == []


class TestR00bUnits:
    def _stent(self, length: tuple[float, str]) -> list[JsonObject]:
        drafts = (
            stent_order("left", id="s1"),
            device_request("ServiceRequest/s1", length=length),
        )
        return cards_of(run(hook="order-sign", drafts=drafts), "R00b")

    def test_centimetres_converted_info(self) -> None:
        (card,) = self._stent((5.5, "cm"))
        assert card["indicator"] == "info"
        assert card["summary"] == "5.5 cm converted to 55 mm for stent length."

    def test_millimetres_need_no_card(self) -> None:
        assert self._stent((90, "mm")) == []

    def test_unknown_unit_warning(self) -> None:
        (card,) = self._stent((3, "[ft_i]"))
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Stent length has no usable unit; threshold checks skipped."
        )

    def test_unitless_fraction_stenosis_is_not_scaled(self) -> None:
        obs = observation(
            "408715008",
            system=SCT,
            quantity=(0.7, ""),
            side="left",
            method=(SCT, "241466007"),
        )
        (card,) = cards_of(run(obs), "R00b")
        assert card["indicator"] == "warning"


class TestR00cStale:
    def test_stale_ivus_listed_when_r09_fires(self) -> None:
        result = run(
            procedure("37252", side="left", date=day(400)),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        assert len(cards_of(result, "R09")) == 1
        (card,) = cards_of(result, "R00c")
        assert card["summary"] == (
            f"Intravascular ultrasound from {day(400)} is over 1 year old and was not used; repeat if still needed."
        )

    def test_no_card_when_nothing_fired(self) -> None:
        assert cards_of(run(negative_duplex("left", days_ago=400)), "R00c") == []

    def test_stale_contralateral_study_is_not_listed(self) -> None:
        result = run(
            procedure("37252", side="right", date=day(400)),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        assert cards_of(result, "R00c") == []


class TestR00dConflict:
    def _pair(self, gap: int) -> list[JsonObject]:
        duplex = observation(
            "24870-8",
            system="http://loinc.org",
            value="373140001",
            value_system=SCT,
            site="46027005",
            side="left",
            date=day(3),
        )
        ctv = report("30623-3", conclusion=[(ICD, "I82.422")], date=day(3 + gap))
        return cards_of(run(duplex, ctv), "R00d")

    def test_disagreement_within_14_days(self) -> None:
        (card,) = self._pair(14)
        assert card["summary"] == (
            "Conflicting iliac results (CT venography vs iliac duplex); treating thrombus as present until reconciled."
        )

    def test_no_conflict_beyond_14_days(self) -> None:
        assert self._pair(15) == []

    def test_other_leg_is_no_conflict(self) -> None:
        right = report("39443-7", conclusion=[(SCT, "373140001")], date=day(3))
        left_ctv = report("30623-3", conclusion=[(ICD, "I82.422")], date=day(3))
        assert cards_of(run(right, left_ctv), "R00d") == []
