"""Clinician review tools: the rules catalogue (docs/rules.md, HTML) and `explain`."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from app.review import (
    RULES_DOC,
    explain_command,
    load_case,
    render_rules_html,
    render_rules_markdown,
)
from app.workup.rules import REGISTRY
from tests.workup.factories import catalog

SCENARIOS = Path(__file__).parent / "scenarios"


def test_docs_rules_md_is_current() -> None:
    assert RULES_DOC.read_text(encoding="utf-8") == render_rules_markdown(catalog()), (
        "docs/rules.md is stale: run `iliac-cds rules-doc`"
    )


def test_every_rule_card_states_when_it_fires() -> None:
    cat = catalog()
    assert [r for r in cat.settings.rules if not cat.card(r).condition] == []


class TestCatalogue:
    def test_every_rule_appears_in_both_outputs(self) -> None:
        cat = catalog()
        markdown, page = render_rules_markdown(cat), render_rules_html(cat)
        for rule_id in cat.settings.rules:
            assert f'<a id="{rule_id}"></a>' in markdown
            assert f"## {rule_id} — {cat.card(rule_id).title}" in markdown
            assert f'<section class="rule" id="{rule_id}">' in page
        for rule in REGISTRY:
            module = rule.evaluate.__module__.replace(".", "/")
            assert f"{module}.py · {rule.evaluate.__name__}" in markdown

    def test_suggestion_codes_override_reasons_and_citations_are_listed(self) -> None:
        cat = catalog()
        markdown, page = render_rules_markdown(cat), render_rules_html(cat)
        for text in (
            "CPT 37252",
            "LOINC 24870-8",
            "IVUS performed elsewhere",
            "JVIR 2023",
        ):
            assert text in markdown
            assert text in page
        for key, citation in cat.sources.items():
            if any(key in cat.card(r).sources for r in cat.settings.rules):
                assert citation in markdown

    def test_html_is_self_contained_and_well_formed(self) -> None:
        page = render_rules_html(catalog())
        assert "<script" not in page.lower()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
        assert "@media print" in page

        class Checker(HTMLParser):
            void = frozenset({"meta", "br", "link"})

            def __init__(self) -> None:
                super().__init__()
                self.stack: list[str] = []
                self.ids: list[str] = []

            def handle_starttag(
                self, tag: str, attrs: list[tuple[str, str | None]]
            ) -> None:
                self.ids += [v for k, v in attrs if k == "id" and v]
                if tag not in self.void:
                    self.stack.append(tag)

            def handle_endtag(self, tag: str) -> None:
                assert self.stack.pop() == tag

        checker = Checker()
        checker.feed(page)
        assert checker.stack == []
        assert len(checker.ids) == len(set(checker.ids))

    def test_text_is_escaped(self) -> None:
        cat = catalog()
        page = render_rules_html(cat)
        for rule_id in cat.settings.rules:
            for variant in cat.card(rule_id).variants.values():
                assert html.escape(variant.summary, quote=True) in page


def _explain(path: Path, hook: str | None = None) -> str:
    console = Console(width=220, record=True)
    explain_command(path, hook, None, console=console)
    return console.export_text()


class TestExplain:
    def test_prints_state_cards_and_expectations_of_a_scenario(self) -> None:
        out = _explain(SCENARIOS / "094-r16-stent-15-months-no-recent-imaging.json")
        assert "post-stent" in out
        assert re.search(r"R16\s+│ left\s+│ info", out)
        assert "93979, 24870-8" in out
        assert "FAIL" not in out
        assert "R00c" in out  # listed among the expectations (mustNot), not as a card
        assert not re.search(r"R00c\s+│ (left|right|-)\s+│", out)

    def test_bare_request_and_hook_override(self, tmp_path: Path) -> None:
        scenario = json.loads(
            (SCENARIOS / "098-r17-nivl-stent-anticoag-draft.json").read_text()
        )
        bare = tmp_path / "request.json"
        bare.write_text(json.dumps(scenario["request"]))
        console = Console(width=220, record=True)
        explain_command(bare, "order-sign", "2026-03-02T10:00:00Z", console=console)
        out = console.export_text()
        assert re.search(r"R17\s+│ left\s+│ info", out)
        assert "Scenario expectations" not in out

    @pytest.mark.parametrize(
        ("hook", "now", "message"),
        [("order-foo", None, "not one of"), (None, "2026-03-02", "time zone")],
    )
    def test_bad_arguments(
        self, hook: str | None, now: str | None, message: str
    ) -> None:
        path = SCENARIOS / "101-r18-recurrent-varicose-veins-c2r.json"
        with pytest.raises(ValueError, match=message):
            explain_command(path, hook, now, console=Console(record=True))

    def test_rejects_other_json(self, tmp_path: Path) -> None:
        other = tmp_path / "x.json"
        other.write_text('{"resourceType": "Patient"}')
        with pytest.raises(ValueError, match="neither a scenario"):
            load_case(other)
