"""R01: exclude DVT first (patient-view and order hooks)."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    ICD,
    SCT,
    Card,
    cards_of,
    condition,
    day,
    negative_duplex,
    report,
    run,
    service_request,
    side_of,
    stent_order,
)


def _r01(
    *resources: JsonObject,
    hook: str = "patient-view",
    drafts: tuple[JsonObject, ...] = (),
    selections: tuple[str, ...] = (),
) -> list[Card]:
    return cards_of(
        run(*resources, hook=hook, drafts=drafts, selections=selections), "R01"
    )


class TestPatientView:
    def test_symptom_without_duplex(self) -> None:
        result = run(condition("R22.42", onset=day(10), id="c1"))
        (card,) = cards_of(result, "R01")
        assert (
            card["summary"]
            == "Exclude DVT first: order complete duplex ultrasound of the left leg veins (CFV to calf)."
        )
        assert side_of(result, card) == "left"
        (suggestion,) = card["suggestions"]
        resource = suggestion["actions"][0]["resource"]
        assert [c["code"] for c in resource["code"]["coding"]] == ["93971", "39432-0"]
        assert resource["reasonReference"] == [{"reference": "Condition/c1"}]

    def test_duplex_30_days_old_counts(self) -> None:
        assert (
            _r01(
                condition("R22.42", onset=day(40)), negative_duplex("left", days_ago=30)
            )
            == []
        )

    def test_duplex_31_days_old_does_not(self) -> None:
        assert (
            len(
                _r01(
                    condition("R22.42", onset=day(40)),
                    negative_duplex("left", days_ago=31),
                )
            )
            == 1
        )

    def test_duplex_before_onset_does_not_count(self) -> None:
        assert (
            len(
                _r01(
                    condition("R22.42", onset=day(5)),
                    negative_duplex("left", days_ago=6),
                )
            )
            == 1
        )

    def test_contralateral_duplex_does_not_count(self) -> None:
        assert (
            len(
                _r01(
                    condition("R22.42", onset=day(10)),
                    negative_duplex("right", days_ago=2),
                )
            )
            == 1
        )

    def test_bilateral_duplex_counts_for_each_leg(self) -> None:
        assert (
            _r01(
                condition("R22.42", onset=day(10)),
                negative_duplex("bilateral", days_ago=2),
            )
            == []
        )

    def test_preliminary_duplex_does_not_count(self) -> None:
        assert (
            len(
                _r01(
                    condition("R22.42", onset=day(10)),
                    negative_duplex("left", days_ago=2, status="preliminary"),
                )
            )
            == 1
        )

    def test_known_dvt_needs_no_exclusion(self) -> None:
        assert (
            _r01(condition("R22.42", onset=day(10)), condition("I82.422", onset=day(3)))
            == []
        )

    def test_negative_ctv_excludes(self) -> None:
        ctv = report("30623-3", conclusion=[(SCT, "373140001")], date=day(80))
        assert _r01(condition("R22.42", onset=day(100)), ctv) == []

    def test_negative_ctv_with_leg_runoff_excludes(self) -> None:
        runoff = report("30807-2", conclusion=[(SCT, "373140001")], date=day(20))
        assert _r01(condition("R22.42", onset=day(40)), runoff) == []

    def test_ctv_older_than_90_days_does_not_exclude(self) -> None:
        ctv = report("30623-3", conclusion=[(SCT, "373140001")], date=day(91))
        assert len(_r01(condition("R22.42", onset=day(100)), ctv)) == 1

    def test_both_legs_give_one_bilateral_card(self) -> None:
        result = run(condition("R22.43", onset=day(3)))
        (card,) = cards_of(result, "R01")
        assert side_of(result, card) == "bilateral"
        assert "bilateral leg veins" in str(card["summary"])

    def test_old_inactive_symptom_is_not_current(self) -> None:
        assert _r01(condition("R22.42", onset=day(400), clinical="resolved")) == []


class TestOrderHooks:
    def test_stent_draft_without_dvt_exclusion(self) -> None:
        cards = _r01(
            condition("R22.42", onset=day(10)),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        assert len(cards) == 1

    def test_unsided_ctv_draft_concerns_symptomatic_leg(self) -> None:
        result = run(
            condition("R22.41", onset=day(10)),
            hook="order-select",
            drafts=(service_request("72191", id="ct1"),),
            selections=("ServiceRequest/ct1",),
        )
        (card,) = cards_of(result, "R01")
        assert side_of(result, card) == "right"

    def test_unselected_draft_is_not_checked_on_order_select(self) -> None:
        drafts = (stent_order("left", id="s1"), service_request("85025", id="x"))
        cards = _r01(
            condition("R22.42", onset=day(10)),
            hook="order-select",
            drafts=drafts,
            selections=("ServiceRequest/x",),
        )
        assert cards == []

    def test_no_workup_draft_no_card(self) -> None:
        assert _r01(condition("R22.42", onset=day(10)), hook="order-sign") == []

    def test_icd_dvt_code_excludes_r01_on_order(self) -> None:
        cards = _r01(
            condition("R22.42", onset=day(10)),
            condition("I82.412", system=ICD),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        assert cards == []
