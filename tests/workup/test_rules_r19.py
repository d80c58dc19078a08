"""R19a pregnancy with leg symptoms; R19b orders not preferred in pregnancy; R02 modality order in pregnancy."""

from __future__ import annotations

from typing import cast

import pytest

from app.workup.jsontypes import JsonObject, JsonValue
from tests.workup.factories import (
    ICD,
    LOINC,
    SCT,
    Card,
    cards_of,
    condition,
    day,
    medication_request,
    negative_duplex,
    observation,
    run,
    service_request,
    side_of,
    stent_order,
)

PREGNANT = condition("77386006", system=SCT)
LEFT_SWELLING = condition("R22.42", site="61685007", side="left", onset=day(4))
RIVAROXABAN = "1232082"
ENOXAPARIN = "854235"


def _r19b(
    *drafts: JsonObject, hook: str = "order-sign", pregnant: bool = True
) -> list[Card]:
    resources = (PREGNANT,) if pregnant else ()
    return cards_of(run(*resources, hook=hook, drafts=drafts), "R19b")


def mrv(
    detail: str | None = None, *, contrast_loinc: bool = False, text: str | None = None
) -> JsonObject:
    loinc = "24873-2" if contrast_loinc else "36789-6"
    draft = service_request("72198", sites=("12921003",), extra_codes=((LOINC, loinc),))
    if text is not None:
        draft["code"] = {**cast(JsonObject, draft["code"]), "text": text}
    if detail is not None:
        details: list[JsonValue] = [{"text": detail}]
        draft["orderDetail"] = details
    return draft


class TestR19a:
    def test_pregnant_with_left_swelling(self) -> None:
        result = run(PREGNANT, LEFT_SWELLING)
        (card,) = cards_of(result, "R19a")
        assert card["indicator"] == "info"
        assert (
            card["summary"]
            == "Pregnant with left leg swelling: duplex incl. iliac Doppler first; if negative and suspicion persists, MRV without contrast."
        )
        assert side_of(result, card) == "left"
        # R01 still fires (duplex first).
        assert len(cards_of(result, "R01")) == 1

    def test_right_leg_pain(self) -> None:
        result = run(PREGNANT, condition("M79.604", onset=day(3)))
        (card,) = cards_of(result, "R19a")
        assert side_of(result, card) == "right"

    def test_both_legs_make_one_bilateral_card(self) -> None:
        bilateral = condition("R22.43", site="61685007", side="bilateral", onset=day(4))
        result = run(PREGNANT, bilateral)
        (card,) = cards_of(result, "R19a")
        assert side_of(result, card) == "bilateral"
        assert card["summary"].startswith("Pregnant with bilateral leg swelling")

    def test_icd_pregnancy_code(self) -> None:
        assert (
            len(cards_of(run(condition("Z33.1", system=ICD), LEFT_SWELLING), "R19a"))
            == 1
        )

    def test_not_pregnant_no_card(self) -> None:
        assert cards_of(run(LEFT_SWELLING), "R19a") == []

    def test_resolved_pregnancy_no_card(self) -> None:
        delivered = condition("77386006", system=SCT, clinical="resolved")
        assert cards_of(run(delivered, LEFT_SWELLING), "R19a") == []

    def test_pregnant_without_leg_symptoms_no_card(self) -> None:
        assert cards_of(run(PREGNANT), "R19a") == []

    def test_patient_view_only(self) -> None:
        result = run(
            PREGNANT,
            LEFT_SWELLING,
            hook="order-sign",
            drafts=(mrv("without contrast"),),
        )
        assert cards_of(result, "R19a") == []


class TestR02InPregnancy:
    def test_non_contrast_mrv_first_then_ctv(self) -> None:
        extent = observation(
            "swelling-extent", value="whole-leg", site="61685007", side="left"
        )
        result = run(
            PREGNANT, LEFT_SWELLING, extent, negative_duplex("left", days_ago=2)
        )
        (card,) = cards_of(result, "R02")
        first, second = card["suggestions"]
        assert first["actions"][0]["resource"]["code"]["coding"][0]["code"] == "72198"
        assert "without contrast" in first["actions"][0]["resource"]["code"]["text"]
        assert second["actions"][0]["resource"]["code"]["coding"][0]["code"] == "72191"
        assert len(cards_of(result, "R19a")) == 1


class TestR19b:
    def _summary(self, card: Card) -> str:
        return str(card["summary"])

    def test_ct_venography(self) -> None:
        ctv = service_request(
            "72191", sites=("12921003",), extra_codes=((LOINC, "30623-3"),)
        )
        (card,) = _r19b(ctv, hook="order-select")
        assert card["indicator"] == "warning"
        assert (
            self._summary(card)
            == "Pregnancy: CT venography is not preferred; use non-contrast MR venography."
        )

    def test_contrast_ct_of_the_pelvis(self) -> None:
        (card,) = _r19b(service_request("74177", sites=("12921003",)))
        assert self._summary(card).startswith(
            "Pregnancy: contrast CT of the pelvis is not preferred"
        )

    @pytest.mark.parametrize(
        "draft",
        [
            mrv("with IV gadolinium contrast", contrast_loinc=True),
            mrv(contrast_loinc=True),
            mrv("with contrast"),
        ],
    )
    def test_gadolinium_mrv(self, draft: JsonObject) -> None:
        (card,) = _r19b(draft)
        assert (
            self._summary(card)
            == "Pregnancy: gadolinium MRV is not preferred; use non-contrast MRV."
        )

    @pytest.mark.parametrize(
        "draft",
        [
            mrv("without contrast"),
            mrv(text="MR venography of the pelvis without contrast"),
            mrv("Non-contrast technique"),
        ],
    )
    def test_non_contrast_mrv_passes(self, draft: JsonObject) -> None:
        assert _r19b(draft) == []

    def test_mrv_with_unstated_contrast_warns(self) -> None:
        (card,) = _r19b(mrv())
        assert "MRV with unstated contrast" in self._summary(card)

    def test_doac_for_dvt(self) -> None:
        draft = medication_request(RIVAROXABAN, status="draft")
        draft["reasonCode"] = [{"coding": [{"system": ICD, "code": "I82.422"}]}]
        (card,) = _r19b(draft, hook="order-select")
        assert (
            self._summary(card)
            == "Pregnancy: a DOAC is not preferred; use weight-adjusted LMWH twice daily."
        )

    def test_doac_without_reason(self) -> None:
        assert len(_r19b(medication_request(RIVAROXABAN, status="draft"))) == 1

    def test_warfarin(self) -> None:
        warfarin = medication_request("11289", status="draft")
        (card,) = _r19b(warfarin)
        assert self._summary(card).startswith("Pregnancy: warfarin is not preferred")

    def test_lmwh_passes(self) -> None:
        assert _r19b(medication_request(ENOXAPARIN, status="draft")) == []

    def test_doac_for_another_stated_indication_is_left_to_the_prescriber(self) -> None:
        draft = medication_request(RIVAROXABAN, status="draft")
        draft["reasonCode"] = [{"coding": [{"system": ICD, "code": "I48.91"}]}]
        assert _r19b(draft) == []

    def test_venography_and_ivus_one_card(self) -> None:
        venogram = service_request("75820", side="left", id="v1")
        ivus = service_request(
            "37252", side="left", sites=("46027005", "63507001"), id="i1"
        )
        (card,) = _r19b(venogram, ivus)
        assert (
            self._summary(card)
            == "Pregnancy: venography and IVUS is not preferred; use defer NIVL workup until after delivery unless limb-threatening."
        )
        assert len(card["summary"]) <= 140

    def test_stent(self) -> None:
        (card,) = _r19b(stent_order("left"))
        assert "iliac vein stenting" in self._summary(card)

    def test_one_card_per_order_class(self) -> None:
        ctv = service_request("72191", sites=("12921003",))
        cards = _r19b(
            ctv, medication_request(RIVAROXABAN, status="draft"), stent_order("left")
        )
        assert len(cards) == 3
        assert all(card["indicator"] == "warning" for card in cards)

    def test_not_pregnant_no_card(self) -> None:
        ctv = service_request("72191", sites=("12921003",))
        assert _r19b(ctv, pregnant=False) == []

    def test_order_select_checks_selected_orders_only(self) -> None:
        ctv = service_request("72191", sites=("12921003",), id="ct1")
        duplex = service_request("93971", side="left", sites=("61685007",), id="us1")
        result = run(
            PREGNANT,
            hook="order-select",
            drafts=(ctv, duplex),
            selections=("ServiceRequest/us1",),
        )
        assert cards_of(result, "R19b") == []
        result = run(
            PREGNANT,
            hook="order-select",
            drafts=(ctv, duplex),
            selections=("ServiceRequest/ct1",),
        )
        assert len(cards_of(result, "R19b")) == 1

    def test_not_on_patient_view(self) -> None:
        assert cards_of(run(PREGNANT, LEFT_SWELLING), "R19b") == []
