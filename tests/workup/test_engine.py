"""Engine contract: spec-exact card JSON, links, STATE card, card sides, state JSON."""

from __future__ import annotations

import json
import uuid

import orjson
from fhir.resources.R4B.servicerequest import ServiceRequest

from app.workup.engine import LinkConfig
from app.workup.jsontypes import JsonValue
from app.workup.render import fill_summary
from tests.workup.factories import (
    LOCAL,
    all_cards,
    cards_of,
    condition,
    day,
    lab,
    negative_duplex,
    observation,
    run,
    side_of,
    stent_order,
)


def _no_empty(value: JsonValue) -> bool:
    if value is None or value == "" or value == [] or value == {}:
        return False
    if isinstance(value, dict):
        return all(_no_empty(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_empty(v) for v in value)
    return True


class TestCardShape:
    def test_cards_are_spec_exact(self) -> None:
        result = run(
            condition("R22.42", onset=day(10)),
            condition("102572006", system="http://snomed.info/sct"),
        )
        assert result.cards
        for card in all_cards(result):
            assert _no_empty(card)
            uuid.UUID(str(card["uuid"]))
            assert len(str(card["summary"])) <= 140
            assert card["indicator"] in ("info", "warning", "critical")
            source = card["source"]
            assert isinstance(source, dict)
            assert isinstance(source["topic"], dict)
            assert (
                source["topic"]["system"]
                == "http://example.org/fhir/CodeSystem/iliofemoral-cds-rules"
            )
            assert str(source["label"]).startswith(str(source["topic"]["code"]) + " · ")
            if "suggestions" in card:
                assert card["selectionBehavior"] in ("at-most-one", "any")
            for reason in card.get("overrideReasons", []):
                assert reason["system"] == LOCAL
                assert reason["display"]
        orjson.dumps(result.cards)

    def test_suggested_resources_are_valid_fhir(self) -> None:
        result = run(condition("R22.43", onset=day(10)))
        for card in all_cards(result):
            for suggestion in card.get("suggestions", []):
                for action in suggestion["actions"]:
                    if action["type"] == "create":
                        ServiceRequest.model_validate(action["resource"])
                        assert action["resource"]["subject"] == {
                            "reference": "Patient/synthetic-patient-1"
                        }
                        assert action["resource"]["intent"] == "proposal"

    def test_links_absolute_and_smart(self) -> None:
        (card,) = cards_of(run(condition("R22.42", onset=day(10))), "R01")
        links = card["links"]
        assert links[0] == {
            "label": "Rule R01: DVT exclusion first",
            "url": "https://cds.example.org/rules#R01",
            "type": "absolute",
        }
        smart = links[1]
        assert smart["type"] == "smart"
        assert json.loads(smart["appContext"]) == {
            "leg": "left",
            "rule": "R01",
        }

    def test_no_smart_link_without_launch_url(self) -> None:
        links = LinkConfig(rules_url="https://cds.example.org/rules")
        (card,) = cards_of(run(condition("R22.42", onset=day(10)), links=links), "R01")
        assert [link["type"] for link in card["links"]] == ["absolute"]


class TestStateCard:
    def test_patient_view_adds_state_card_when_under_way(self) -> None:
        result = run(condition("R22.42", onset=day(10)), negative_duplex("left"))
        (card,) = cards_of(result, "STATE")
        assert card["indicator"] == "info"
        assert str(card["summary"]).startswith(
            "Iliac venous workup: left leg DVT excluded"
        )
        assert side_of(result, card) == "left"
        assert "STATE" not in result.rule_ids

    def test_no_state_card_without_workup(self) -> None:
        assert run(lab("1751-7", quantity=(4.0, "g/dL"))).cards == []

    def test_no_state_card_on_order_hooks(self) -> None:
        result = run(
            condition("R22.42", onset=day(10)),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        assert cards_of(result, "STATE") == []


class TestResult:
    def test_card_sides_cover_every_card(self) -> None:
        result = run(
            condition("R22.42", onset=day(10)),
            condition("102572006", system="http://snomed.info/sct"),
        )
        assert set(result.card_sides) == {str(c["uuid"]) for c in result.cards}
        (r00a,) = cards_of(result, "R00a")
        assert side_of(result, r00a) is None

    def test_one_card_per_rule_per_leg(self) -> None:
        result = run(
            condition("R22.42", onset=day(10)), condition("M79.605", onset=day(8))
        )
        assert len(cards_of(result, "R01")) == 1

    def test_state_json_is_plain_json(self) -> None:
        result = run(condition("R22.42", onset=day(10)), negative_duplex("left"))
        state = result.state.to_json()
        assert orjson.loads(orjson.dumps(state)) == state
        left = result.state.legs[0].to_json()
        assert left["stage"] == "dvt-excluded"
        assert left["side"] == "left"

    def test_large_irrelevant_prefetch_yields_nothing(self) -> None:
        labs = [lab(f"{1000 + i}-1", quantity=(i, "mg/dL")) for i in range(300)]
        result = run(*labs)
        assert result.cards == []
        assert result.invalid_resources == 0

    def test_stent_draft_state(self) -> None:
        result = run(
            observation("ceap-c", value="C4a", side="left"),
            hook="order-sign",
            drafts=(stent_order("left"),),
        )
        leg = result.state.leg(result.state.legs[0].side)
        assert leg.stage.value == "treatment-decision"
        assert leg.missing


class TestFillSummary:
    def test_truncates_placeholder_not_verb(self) -> None:
        text = fill_summary(
            "Laterality missing on {resource}; record it.", {"resource": "x" * 200}, 60
        )
        assert len(text) == 60
        assert text.endswith("…; record it.")

    def test_capitalised_side(self) -> None:
        assert fill_summary("{Side} leg.", {"side": "left"}, 140) == "Left leg."
