"""Every data file validates, cross-references resolve, and every spec rule has a card."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from app.catalog.loader import CatalogError, load_catalog
from app.config import LOCAL_CODE_SYSTEM
from app.workup.engine import check_registry
from app.workup.rules import REGISTRY

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "cards"
MAPPINGS = REPO / "fhir_mappings"
SPEC = Path(__file__).parents[2].parent / "shared/clinical/clinical-rules.md"
DATA_FILES = sorted([*CARDS.glob("*.yaml"), *MAPPINGS.glob("*.yaml")])


def _load(cards: Path = CARDS, mappings: Path = MAPPINGS):  # type: ignore[no-untyped-def]
    return load_catalog(
        cards_dir=cards, mappings_dir=mappings, local_system=LOCAL_CODE_SYSTEM
    )


def _spec_rule_ids() -> list[str]:
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("## 3. Rule summary", 1)[1].split("## 4.", 1)[0]
    return re.findall(r"^\| (R\d\d[a-z]?) \|", section, flags=re.MULTILINE)


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    cards, mappings = tmp_path / "cards", tmp_path / "fhir_mappings"
    shutil.copytree(CARDS, cards)
    shutil.copytree(MAPPINGS, mappings)
    return cards, mappings


class TestRealCatalog:
    def test_loads_and_describes_every_file(self) -> None:
        catalog = _load()
        described = {Path(row.path).name for row in catalog.describe()}
        assert described == {
            p.name for p in DATA_FILES if not p.name.startswith("_")
        } | {"_systems.yaml"}

    def test_every_spec_rule_has_a_card(self) -> None:
        ids = _spec_rule_ids()
        assert len(ids) >= 30
        catalog = _load()
        assert sorted(ids) == sorted(catalog.settings.rules)
        assert set(ids) <= set(catalog.cards)

    def test_registry_matches_cards(self) -> None:
        check_registry(_load())
        assert [r.id for r in REGISTRY][:4] == ["R00a", "R00b", "R00c", "R00d"]

    def test_summaries_are_the_spec_templates(self) -> None:
        text = SPEC.read_text(encoding="utf-8")
        catalog = _load()
        for rule_id in _spec_rule_ids():
            for variant in catalog.card(rule_id).variants.values():
                assert variant.summary in text, rule_id


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_data_file_is_valid_yaml_mapping(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict)


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_broken_file_is_named_in_the_error(path: Path, tmp_path: Path) -> None:
    cards, mappings = _copy(tmp_path)
    target = (cards if path.parent == CARDS else mappings) / path.name
    target.write_text(
        path.read_text(encoding="utf-8") + "\nunexpected_key: 1\n", encoding="utf-8"
    )
    with pytest.raises(CatalogError) as err:
        _load(cards, mappings)
    assert err.value.path == target
    assert target.name in str(err.value)


class TestCrossChecks:
    def _edit(self, path: Path, old: str, new: str) -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def test_unknown_fact_kind(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        self._edit(cards / "R09.yaml", "- stent-device\n", "- no-such-fact\n")
        with pytest.raises(CatalogError, match="no-such-fact") as err:
            _load(cards, mappings)
        assert err.value.path.name == "R09.yaml"

    def test_rule_without_card(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        (cards / "R17.yaml").unlink()
        with pytest.raises(CatalogError, match="has no card") as err:
            _load(cards, mappings)
        assert err.value.path.name == "R17.yaml"

    def test_card_for_unknown_rule(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        shutil.copy(cards / "R17.yaml", cards / "R99.yaml")
        self._edit(cards / "R99.yaml", "id: R17", "id: R99")
        with pytest.raises(CatalogError, match="not a rule listed"):
            _load(cards, mappings)

    def test_unknown_order_and_source(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        self._edit(cards / "R01.yaml", "order: duplex-leg", "order: nope")
        with pytest.raises(CatalogError, match="unknown order"):
            _load(cards, mappings)

    def test_unquoted_code_is_rejected(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        self._edit(mappings / "conditions.yaml", 'code: "84114007"', "code: 84114007")
        with pytest.raises(CatalogError, match="quoted string") as err:
            _load(cards, mappings)
        assert err.value.path.name == "conditions.yaml"

    def test_duplicate_code_across_concepts(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        self._edit(mappings / "conditions.yaml", 'code: "42343007"', 'code: "84114007"')
        with pytest.raises(CatalogError, match="84114007"):
            _load(cards, mappings)

    def test_summary_too_long(self, tmp_path: Path) -> None:
        cards, mappings = _copy(tmp_path)
        self._edit(
            cards / "R14.yaml", "limit migration.", "limit migration." + " x" * 40
        )
        with pytest.raises(CatalogError, match="exceeds 140") as err:
            _load(cards, mappings)
        assert err.value.path.name == "R14.yaml"


class TestCodeIndex:
    def test_prefix_range_and_side_digit(self) -> None:
        index = _load().index
        icd = "http://hl7.org/fhir/sid/icd-10-cm"
        (dvt,) = index.lookup(icd, "I82.422")
        assert (dvt.kind, dvt.side, dvt.segment) == ("dvt", "left", "iliac")
        assert index.lookup(icd, "I82.521")[0].kind == "dvt-chronic"
        assert index.lookup(icd, "I50.22")[0].kind == "heart-failure"
        assert index.lookup(icd, "C85.96")[0].kind == "characterised-mass"
        assert index.lookup(icd, "Z3A.30")[0].kind == "pregnancy"
        assert {m.kind for m in index.lookup(icd, "O22.32")} == {"dvt", "pregnancy"}
        assert index.lookup(icd, "I73.9") == ()

    def test_both_loinc_duplex_pairs(self) -> None:
        index = _load().index
        sides = {
            c: index.lookup("http://loinc.org", c)[0].side
            for c in ("39432-0", "39053-0", "39443-7", "39052-2")
        }
        assert sides == {
            "39432-0": "left",
            "39053-0": "left",
            "39443-7": "right",
            "39052-2": "right",
        }

    def test_local_token_uses_configured_system(self) -> None:
        catalog = load_catalog(
            cards_dir=CARDS, mappings_dir=MAPPINGS, local_system="urn:test:local"
        )
        assert (
            catalog.index.lookup("urn:test:local", "cfv-waveform")[0].kind
            == "cfv-waveform"
        )
        assert catalog.index.lookup(LOCAL_CODE_SYSTEM, "cfv-waveform") == ()
