"""Selection, validation, laterality, status and unit handling of extraction."""

from __future__ import annotations

from decimal import Decimal

from app.workup.extract import extract_facts
from app.workup.facts import Fact, FactSet, Side, Status
from app.workup.jsontypes import JsonObject
from tests.workup.factories import (
    CPT,
    DCM,
    ICD,
    LOINC,
    NOW,
    SCT,
    catalog,
    condition,
    day,
    device_request,
    imaging_study,
    lab,
    negative_duplex,
    observation,
    report,
    service_request,
    stent_order,
)


def extract(*resources: JsonObject, drafts: tuple[JsonObject, ...] = ()) -> FactSet:
    return extract_facts(
        resources=resources,
        draft_orders=drafts,
        selections=(),
        catalog=catalog(),
        now=NOW,
    )


def only(facts: FactSet, kind: str) -> Fact:
    (fact,) = facts.of(kind)
    return fact


class TestSelection:
    def test_irrelevant_resources_are_not_validated(self) -> None:
        broken_lab = lab("2345-7", quantity=(5, "mmol/L")) | {"bogusField": 1}
        facts = extract(broken_lab, {"resourceType": "Patient", "id": "p"})
        assert facts.facts == ()
        assert facts.invalid_resources == 0

    def test_invalid_relevant_resource_is_dropped_and_counted(self) -> None:
        bad = condition("R22.42") | {"bogusField": 1}
        facts = extract(bad, condition("R22.41"))
        assert facts.invalid_resources == 1
        assert [f.side for f in facts.facts] == [Side.RIGHT]


class TestStatus:
    def test_refuted_and_entered_in_error_are_ignored(self) -> None:
        facts = extract(
            condition("I82.422", verification="refuted"),
            condition("I82.412", verification="entered-in-error"),
            negative_duplex("left", status="entered-in-error"),
        )
        assert facts.facts == ()

    def test_preliminary_result_is_not_final(self) -> None:
        fact = only(
            extract(negative_duplex("left", status="preliminary")), "duplex-leg"
        )
        assert fact.status is Status.PRELIMINARY
        assert not fact.is_result

    def test_resolved_condition_is_inactive(self) -> None:
        fact = only(extract(condition("R22.42", clinical="resolved")), "leg-edema")
        assert fact.status is Status.INACTIVE


class TestLaterality:
    def test_lateralised_icd_code(self) -> None:
        fact = only(extract(condition("I82.422")), "dvt")
        assert (fact.side, fact.segment) == (Side.LEFT, "iliac")

    def test_mcode_extension_on_body_site(self) -> None:
        fact = only(
            extract(condition("102572006", system=SCT, side="right")), "leg-edema"
        )
        assert fact.side is Side.RIGHT

    def test_no_laterality_is_none_never_left(self) -> None:
        fact = only(extract(condition("102572006", system=SCT)), "leg-edema")
        assert fact.side is None
        assert not fact.laterality_conflict
        assert fact.side_specific

    def test_code_and_body_site_disagree(self) -> None:
        fact = only(extract(condition("R22.42", side="right")), "leg-edema")
        assert fact.side is None
        assert fact.laterality_conflict

    def test_imaging_study_series_laterality(self) -> None:
        fact = only(extract(imaging_study("IVUS", laterality="left")), "ivus")
        assert fact.side is Side.LEFT
        assert "ivus" in fact.methods

    def test_cpt_modifier_coding(self) -> None:
        draft = service_request("93971", extra_codes=((CPT, "RT"),))
        assert only(extract(drafts=(draft,)), "duplex-leg").side is Side.RIGHT

    def test_device_request_takes_side_of_its_service_request(self) -> None:
        facts = extract(
            drafts=(stent_order("right", id="s1"), device_request("ServiceRequest/s1"))
        )
        assert only(facts, "stent-device").side is Side.RIGHT
        assert only(facts, "stent-length").side is Side.RIGHT

    def test_report_side_flows_to_its_result_observations(self) -> None:
        seg = observation(
            "39432-0",
            system=LOINC,
            value="373140001",
            value_system=SCT,
            site="56849005",
            id="o1",
        )
        facts = extract(
            report("39432-0", results=["Observation/o1"]),
            seg
            | {"code": {"text": "x", "coding": [{"system": LOINC, "code": "30881-7"}]}},
        )
        sided = [f for f in facts.facts if f.source == "Observation/o1"]
        assert [f.side for f in sided] == [Side.LEFT]


class TestValues:
    def test_report_conclusion_code(self) -> None:
        fact = only(extract(negative_duplex("left")), "duplex-leg")
        assert fact.value == "no-thrombus"
        assert fact.is_result
        assert fact.side is Side.LEFT

    def test_dvt_code_as_conclusion_locates_thrombus(self) -> None:
        dr = report("30623-3", conclusion=[(ICD, "I82.422")])
        fact = only(extract(dr), "ct-venography")
        assert (fact.value, fact.side, fact.segment) == ("thrombus", Side.LEFT, "iliac")

    def test_components_and_units(self) -> None:
        from tests.workup.factories import component

        obs = observation(
            "241466007",
            system=SCT,
            side="left",
            components=[
                component("408715008", quantity=(72, "%")),
                component("397413000", quantity=(1.4, "cm")),
            ],
        )
        facts = extract(obs)
        stenosis = only(facts, "diameter-stenosis")
        assert stenosis.measure is not None
        assert stenosis.measure.value == Decimal(72)
        assert "ivus" in stenosis.methods
        assert stenosis.side is Side.LEFT
        diameter = only(facts, "lumen-diameter")
        assert diameter.measure is not None
        assert diameter.measure.value == Decimal(14)
        assert diameter.measure.converted

    def test_unusable_units(self) -> None:
        facts = extract(
            drafts=(
                stent_order(id="s2"),
                device_request(
                    "ServiceRequest/s2", length=(9, "[ft_i]"), diameter=(0.5, "")
                ),
            )
        )
        length = only(facts, "stent-length").measure
        assert length is not None
        assert not length.usable
        diameter = only(facts, "stent-diameter").measure
        assert diameter is not None
        assert not diameter.usable

    def test_inches_convert_exactly(self) -> None:
        facts = extract(
            drafts=(
                stent_order(id="s3"),
                device_request("ServiceRequest/s3", length=(2.5, "[in_i]")),
            )
        )
        length = only(facts, "stent-length").measure
        assert length is not None
        assert length.value == Decimal("63.5")

    def test_local_coded_value(self) -> None:
        fact = only(
            extract(
                observation("cfv-waveform", value="non-phasic-continuous", side="left")
            ),
            "cfv-waveform",
        )
        assert fact.value == "non-phasic-continuous"


class TestStale:
    def test_result_older_than_365_days_is_split_off(self) -> None:
        facts = extract(
            negative_duplex("left", days_ago=366),
            negative_duplex("right", days_ago=365),
        )
        assert [f.side for f in facts.stale] == [Side.LEFT]
        assert [f.side for f in facts.facts] == [Side.RIGHT]

    def test_conditions_never_go_stale(self) -> None:
        facts = extract(condition("I82.422", onset=day(800)))
        assert len(facts.facts) == 1
        assert facts.stale == ()


def test_ct_modality_needs_a_pelvic_site() -> None:
    assert extract(imaging_study("CT")).facts == ()
    fact = only(extract(imaging_study("CT", site="816092008")), "cross-sectional-study")
    assert "pelvic-xsec" in fact.tags
    assert DCM
