"""R10, R11, R13, R14, R15: checks of a drafted iliac vein stent."""

from __future__ import annotations

from app.workup.jsontypes import JsonObject, JsonValue
from tests.workup.factories import (
    DCM,
    LOCAL,
    SCT,
    UCUM,
    Card,
    all_cards,
    cards_of,
    cc,
    condition,
    day,
    device_request,
    observation,
    procedure,
    run,
    service_request,
    side_of,
)

CIV, EIV, IVC, CFV = "46027005", "63507001", "64131007", "397363009"
IVUS_METHOD = (SCT, "241466007")
LENGTH_EXT = "http://example.org/fhir/StructureDefinition/iliofemoral-cds-stent-length"
SWELLING = {"left": "R22.42", "right": "R22.41"}


def symptoms(side: str = "left") -> JsonObject:
    return condition(SWELLING[side], onset=day(200))


def ivus_obs(
    code: str,
    *,
    quantity: tuple[float, str],
    side: str = "left",
    site: str = CIV,
    days_ago: int = 5,
    system: str = SCT,
) -> JsonObject:
    return observation(
        code,
        system=system,
        quantity=quantity,
        side=side,
        site=site,
        method=IVUS_METHOD,
        date=day(days_ago),
    )


def ivus(
    side: str = "left",
    *,
    ds: tuple[float, str] | None = (75, "%"),
    mld: float | None = None,
    ref: tuple[float, str] | None = (14, "mm"),
    behaviour: str | None = "fixed",
    days_ago: int = 5,
) -> list[JsonObject]:
    """An IVUS procedure of one leg with its measurements (defaults: fixed 75 % lesion, EIV 14 mm)."""
    out = [procedure("37252", side=side, site=CIV, date=day(days_ago))]
    if ds is not None:
        out.append(ivus_obs("408715008", quantity=ds, side=side, days_ago=days_ago))
    if mld is not None:
        out.append(
            ivus_obs("397413000", quantity=(mld, "mm"), side=side, days_ago=days_ago)
        )
    if ref is not None:
        out.append(
            ivus_obs("397413000", quantity=ref, side=side, site=EIV, days_ago=days_ago)
        )
    if behaviour is not None:
        out.append(lesion(behaviour, side=side, days_ago=days_ago))
    return out


def lesion(
    value: str,
    *,
    side: str = "left",
    days_ago: int = 5,
    method: tuple[str, str] = IVUS_METHOD,
) -> JsonObject:
    return observation(
        "lesion-behavior",
        value=value,
        side=side,
        site=CIV,
        method=method,
        date=day(days_ago),
    )


def stent(
    side: str = "left",
    *,
    length: tuple[float, str] | None = (90, "mm"),
    diameter: tuple[float, str] | None = (16, "mm"),
    sites: tuple[str, ...] = (CIV, EIV),
    sid: str | None = None,
) -> tuple[JsonObject, JsonObject]:
    order = service_request("37238", side=side, sites=sites, id=sid)
    device = device_request(
        f"ServiceRequest/{order['id']}", length=length, diameter=diameter
    )
    return order, device


def extension_device(based_on: str, length: float) -> JsonObject:
    device = device_request(based_on, length=(length, "mm"))
    params = device["parameter"]
    assert isinstance(params, list)
    marker: JsonValue = {"code": cc(LOCAL, "stent-extension"), "valueBoolean": True}
    device["parameter"] = [*params, marker]
    return device


def sign(
    *resources: JsonObject, drafts: tuple[JsonObject, ...], hook: str = "order-sign"
) -> list[Card]:
    return all_cards(run(*resources, hook=hook, drafts=drafts))


def of(cards: list[Card], rule_id: str) -> list[Card]:
    return [c for c in cards if c["source"]["topic"]["code"] == rule_id]


def ids(cards: list[Card]) -> set[str]:
    return {c["source"]["topic"]["code"] for c in cards}


class TestR10:
    def test_61_0_fires(self) -> None:
        result = run(
            symptoms(), *ivus(ds=(61.0, "%")), hook="order-sign", drafts=stent()
        )
        (card,) = cards_of(result, "R10")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "IVUS diameter stenosis 61% is at or below the >61% threshold predictive of stent benefit."
        )
        assert side_of(result, card) == "left"
        assert "Jayaraj-2021" in card["detail"]

    def test_61_5_does_not(self) -> None:
        assert of(sign(symptoms(), *ivus(ds=(61.5, "%")), drafts=stent()), "R10") == []

    def test_right_leg(self) -> None:
        result = run(
            symptoms("right"),
            *ivus("right", ds=(50, "%")),
            hook="order-select",
            drafts=stent("right"),
        )
        (card,) = cards_of(result, "R10")
        assert side_of(result, card) == "right"
        assert "50%" in card["summary"]

    def test_computed_from_mld_and_reference(self) -> None:
        cards = sign(symptoms(), *ivus(ds=None, mld=6.0), drafts=stent())
        (card,) = of(cards, "R10")
        assert "57.1%" in card["summary"]
        assert "computed" in card["detail"]

    def test_computed_value_is_rounded_before_the_boundary(self) -> None:
        # (1 - 5.46/14) x 100 = 61.0 -> fires; (1 - 5.4/14) x 100 = 61.4 -> does not.
        fires = sign(symptoms(), *ivus(ds=None, mld=5.46), drafts=stent())
        assert "61%" in of(fires, "R10")[0]["summary"]
        passes = sign(symptoms(), *ivus(ds=None, mld=5.4), drafts=stent())
        assert of(passes, "R10") == []

    def test_unitless_fraction_is_not_scaled(self) -> None:
        cards = sign(symptoms(), *ivus(ds=(0.55, "")), drafts=stent())
        assert of(cards, "R10") == []
        (units,) = of(cards, "R00b")
        assert units["indicator"] == "warning"

    def test_no_quantitative_result_gives_no_card(self) -> None:
        cards = sign(symptoms(), *ivus(ds=None), drafts=stent())
        assert of(cards, "R10") == []

    def test_ct_percent_compression_is_not_ivus(self) -> None:
        ct = observation(
            "408715008",
            system=SCT,
            quantity=(40, "%"),
            side="left",
            site=CIV,
            method=(DCM, "CT"),
            date=day(3),
        )
        cards = sign(symptoms(), ct, *ivus(ds=None), drafts=stent())
        assert of(cards, "R10") == []

    def test_ivus_91_days_old_is_not_used(self) -> None:
        cards = sign(symptoms(), *ivus(ds=(40, "%"), days_ago=91), drafts=stent())
        assert of(cards, "R10") == []
        assert "R09" in ids(cards)

    def test_contralateral_ivus_is_not_used(self) -> None:
        cards = sign(symptoms(), *ivus("right", ds=(40, "%")), drafts=stent())
        assert of(cards, "R10") == []

    def test_suppressed_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = sign(symptoms(), dvt, *ivus(ds=(40, "%")), drafts=stent())
        assert of(cards, "R10") == []

    def test_not_on_patient_view(self) -> None:
        assert cards_of(run(symptoms(), *ivus(ds=(40, "%"))), "R10") == []


class TestR11:
    def test_dynamic_lesion_warns(self) -> None:
        result = run(
            symptoms(), *ivus(behaviour="dynamic"), hook="order-sign", drafts=stent()
        )
        (card,) = cards_of(result, "R11")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Dynamic left iliac lesion (varies with breathing/position): only fixed lesions warrant stenting."
        )
        assert side_of(result, card) == "left"

    def test_right_leg(self) -> None:
        result = run(
            symptoms("right"),
            *ivus("right", behaviour="dynamic"),
            hook="order-select",
            drafts=stent("right"),
        )
        (card,) = cards_of(result, "R11")
        assert side_of(result, card) == "right"

    def test_fixed_lesion_passes(self) -> None:
        assert of(sign(symptoms(), *ivus(), drafts=stent()), "R11") == []

    def test_latest_behaviour_wins(self) -> None:
        older_dynamic = lesion("dynamic", days_ago=30)
        cards = sign(symptoms(), older_dynamic, *ivus(days_ago=5), drafts=stent())
        assert of(cards, "R11") == []
        newer_dynamic = lesion("dynamic", days_ago=2)
        cards = sign(symptoms(), newer_dynamic, *ivus(days_ago=5), drafts=stent())
        assert len(of(cards, "R11")) == 1

    def test_dynamic_on_venography(self) -> None:
        veno = lesion("dynamic", method=(DCM, "XA"))
        cards = sign(symptoms(), veno, *ivus(behaviour=None), drafts=stent())
        assert len(of(cards, "R11")) == 1

    def test_ct_statement_does_not_count(self) -> None:
        ct = lesion("dynamic", method=(DCM, "CT"))
        cards = sign(symptoms(), ct, *ivus(behaviour=None), drafts=stent())
        assert of(cards, "R11") == []

    def test_outside_w_ivus(self) -> None:
        cards = sign(symptoms(), lesion("dynamic", days_ago=91), drafts=stent())
        assert of(cards, "R11") == []

    def test_suppressed_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = sign(symptoms(), dvt, *ivus(behaviour="dynamic"), drafts=stent())
        assert of(cards, "R11") == []


class TestR13:
    def test_59_mm_is_critical(self) -> None:
        result = run(
            symptoms(), *ivus(), hook="order-sign", drafts=stent(length=(59, "mm"))
        )
        (card,) = cards_of(result, "R13")
        assert card["indicator"] == "critical"
        assert (
            card["summary"]
            == "Stent length 59 mm is below the 60 mm minimum for iliac vein stents (migration risk)."
        )
        assert side_of(result, card) == "left"

    def test_60_mm_passes(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=(60.0, "mm")))
        assert of(cards, "R13") == []

    def test_5_5_cm_is_55_mm(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=(5.5, "cm")))
        (card,) = of(cards, "R13")
        assert card["indicator"] == "critical"
        assert "55 mm" in card["summary"]
        assert of(cards, "R00b")[0]["indicator"] == "info"

    def test_6_0_cm_passes(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=(6.0, "cm")))
        assert of(cards, "R13") == []

    def test_inches_are_converted(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=(2.5, "[in_i]")))
        assert of(cards, "R13") == []  # 63.5 mm

    def test_missing_length_is_a_warning(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=None))
        (card,) = of(cards, "R13")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Stent length not specified; iliac vein stents must be at least 60 mm long."
        )

    def test_stent_order_without_device_has_no_length(self) -> None:
        order = service_request("37238", side="left", sites=(CIV, EIV))
        (card,) = of(sign(symptoms(), *ivus(), drafts=(order,)), "R13")
        assert card["indicator"] == "warning"

    def test_unusable_unit_gives_r00b_and_the_missing_variant(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(length=(90, "")))
        (card,) = of(cards, "R13")
        assert card["indicator"] == "warning"
        assert "not specified" in card["summary"]
        (units,) = of(cards, "R00b")
        assert units["indicator"] == "warning"

    def test_each_stent_is_evaluated(self) -> None:
        order, long_one = stent(sid="multi")
        short = device_request("ServiceRequest/multi", length=(40, "mm"))
        (card,) = of(sign(symptoms(), *ivus(), drafts=(order, long_one, short)), "R13")
        assert card["indicator"] == "critical"
        assert "40 mm" in card["summary"]

    def test_marked_extension_over_a_long_stent_is_out_of_scope(self) -> None:
        order, main = stent(sid="ext1")
        extra = extension_device("ServiceRequest/ext1", 40)
        cards = sign(symptoms(), *ivus(), drafts=(order, main, extra))
        assert of(cards, "R13") == []

    def test_marked_extension_without_a_long_stent_is_checked(self) -> None:
        order, main = stent(sid="ext2", length=(50, "mm"))
        extra = extension_device("ServiceRequest/ext2", 40)
        (card,) = of(sign(symptoms(), *ivus(), drafts=(order, main, extra)), "R13")
        assert "40 mm" in card["summary"]

    def test_selected_extension_order_is_anchored_by_the_unselected_stent(
        self,
    ) -> None:
        main = stent(sid="main")
        ext_order = service_request("37239", side="left", sites=(EIV,), id="ext3")
        ext = extension_device("ServiceRequest/ext3", 40)
        result = run(
            symptoms(),
            *ivus(),
            hook="order-select",
            drafts=(*main, ext_order, ext),
            selections=("ServiceRequest/ext3",),
        )
        assert cards_of(result, "R13") == []

    def test_length_from_service_request_extension(self) -> None:
        order = service_request("37238", side="left", sites=(CIV, EIV))
        order["extension"] = [
            {
                "url": LENGTH_EXT,
                "valueQuantity": {
                    "value": 50,
                    "unit": "mm",
                    "system": UCUM,
                    "code": "mm",
                },
            }
        ]
        (card,) = of(sign(symptoms(), *ivus(), drafts=(order,)), "R13")
        assert "50 mm" in card["summary"]

    def test_two_short_stent_orders_one_card_per_leg(self) -> None:
        first = stent(length=(50, "mm"))
        second = stent(length=(45, "mm"))
        (card,) = of(sign(symptoms(), *ivus(), drafts=(*first, *second)), "R13")
        assert "45 mm" in card["summary"]

    def test_per_leg_cards(self) -> None:
        result = run(
            symptoms("left"),
            symptoms("right"),
            *ivus("left"),
            *ivus("right"),
            hook="order-sign",
            drafts=(*stent("left", length=(50, "mm")), *stent("right")),
        )
        (card,) = cards_of(result, "R13")
        assert side_of(result, card) == "left"

    def test_still_returned_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = sign(symptoms(), dvt, *ivus(), drafts=stent(length=(50, "mm")))
        assert len(of(cards, "R13")) == 1

    def test_missing_laterality_pauses_it(self) -> None:
        order = service_request("37238", sites=(CIV, EIV), id="nolat")
        device = device_request("ServiceRequest/nolat", length=(50, "mm"))
        cards = sign(symptoms(), *ivus(), drafts=(order, device))
        assert of(cards, "R13") == []
        assert "R00a" in ids(cards)

    def test_order_select_selected_device_request(self) -> None:
        order, device = stent(length=(50, "mm"), sid="sel")
        other = service_request("93971", side="left", id="other")
        drafts = (order, device, other)
        picked = run(
            symptoms(),
            *ivus(),
            hook="order-select",
            drafts=drafts,
            selections=(f"DeviceRequest/{device['id']}",),
        )
        assert len(cards_of(picked, "R13")) == 1
        skipped = run(
            symptoms(),
            *ivus(),
            hook="order-select",
            drafts=drafts,
            selections=("ServiceRequest/other",),
        )
        assert cards_of(skipped, "R13") == []

    def test_not_on_patient_view(self) -> None:
        assert cards_of(run(symptoms()), "R13") == []


class TestR14:
    def test_civ_only_warns(self) -> None:
        result = run(symptoms(), *ivus(), hook="order-sign", drafts=stent(sites=(CIV,)))
        (card,) = cards_of(result, "R14")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Planned stent does not reach the external iliac vein; extend into its straight segment to limit migration."
        )
        assert side_of(result, card) == "left"
        assert "common iliac vein" in card["detail"]

    def test_right_leg(self) -> None:
        result = run(
            symptoms("right"),
            *ivus("right"),
            hook="order-select",
            drafts=stent("right", sites=(CIV,)),
        )
        (card,) = cards_of(result, "R14")
        assert side_of(result, card) == "right"

    def test_civ_and_eiv_pass(self) -> None:
        assert of(sign(symptoms(), *ivus(), drafts=stent()), "R14") == []

    def test_ivc_only_is_not_applicable(self) -> None:
        assert of(sign(symptoms(), *ivus(), drafts=stent(sites=(IVC,))), "R14") == []

    def test_cfv_only_is_not_applicable(self) -> None:
        assert of(sign(symptoms(), *ivus(), drafts=stent(sites=(CFV,))), "R14") == []

    def test_unspecified_iliac_segment_warns(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(sites=("244411005",)))
        (card,) = of(cards, "R14")
        assert "segment not stated" in card["detail"]

    def test_second_order_reaching_the_eiv(self) -> None:
        civ = stent(sites=(CIV,))
        eiv = stent(sites=(EIV,))
        assert of(sign(symptoms(), *ivus(), drafts=(*civ, *eiv)), "R14") == []

    def test_still_returned_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = sign(symptoms(), dvt, *ivus(), drafts=stent(sites=(CIV,)))
        assert len(of(cards, "R14")) == 1


class TestR15:
    def test_equal_to_reference_warns(self) -> None:
        result = run(
            symptoms(), *ivus(), hook="order-sign", drafts=stent(diameter=(14, "mm"))
        )
        (card,) = cards_of(result, "R15")
        assert card["indicator"] == "warning"
        assert (
            card["summary"]
            == "Stent 14 mm vs reference EIV 14 mm: oversize by 1-4 mm per manufacturer guidance."
        )
        assert side_of(result, card) == "left"

    def test_boundaries(self) -> None:
        for diameter, fires in ((14.9, True), (15, False), (18, False), (18.1, True)):
            cards = sign(symptoms(), *ivus(), drafts=stent(diameter=(diameter, "mm")))
            assert bool(of(cards, "R15")) is fires, diameter

    def test_oversize_6_warns(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(diameter=(20, "mm")))
        assert "Stent 20 mm vs reference EIV 14 mm" in of(cards, "R15")[0]["summary"]

    def test_right_leg(self) -> None:
        result = run(
            symptoms("right"),
            *ivus("right"),
            hook="order-select",
            drafts=stent("right", diameter=(20, "mm")),
        )
        (card,) = cards_of(result, "R15")
        assert side_of(result, card) == "right"

    def test_diameter_in_cm(self) -> None:
        ok = sign(symptoms(), *ivus(), drafts=stent(diameter=(1.6, "cm")))
        assert of(ok, "R15") == []
        equal = sign(symptoms(), *ivus(), drafts=stent(diameter=(1.4, "cm")))
        assert "Stent 14 mm" in of(equal, "R15")[0]["summary"]

    def test_reference_in_cm(self) -> None:
        cards = sign(symptoms(), *ivus(ref=(1.1, "cm")), drafts=stent())
        assert "reference EIV 11 mm" in of(cards, "R15")[0]["summary"]

    def test_missing_reference_gives_no_card(self) -> None:
        cards = sign(symptoms(), *ivus(ref=None), drafts=stent(diameter=(30, "mm")))
        assert of(cards, "R15") == []

    def test_reference_from_91_day_old_ivus_is_not_used(self) -> None:
        cards = sign(symptoms(), *ivus(days_ago=91), drafts=stent(diameter=(30, "mm")))
        assert of(cards, "R15") == []

    def test_contralateral_reference_is_not_used(self) -> None:
        cards = sign(symptoms(), *ivus("right"), drafts=stent(diameter=(30, "mm")))
        assert of(cards, "R15") == []

    def test_missing_diameter_gives_no_card(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent(diameter=None))
        assert of(cards, "R15") == []

    def test_notes_no_quantitative_ivus_result(self) -> None:
        cards = sign(symptoms(), *ivus(ds=None), drafts=stent(diameter=(14, "mm")))
        (card,) = of(cards, "R15")
        assert "No quantitative IVUS result" in card["detail"]
        assert of(cards, "R10") == []

    def test_still_returned_during_active_dvt(self) -> None:
        dvt = condition("I82.422", onset=day(5))
        cards = sign(symptoms(), dvt, *ivus(), drafts=stent(diameter=(14, "mm")))
        assert len(of(cards, "R15")) == 1

    def test_clean_stent_order_gets_no_device_card(self) -> None:
        cards = sign(symptoms(), *ivus(), drafts=stent())
        assert ids(cards) & {"R10", "R11", "R12a", "R13", "R14", "R15", "R09"} == set()
