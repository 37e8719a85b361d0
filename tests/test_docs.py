"""Documentation generated from the rules stays current, so users never read a stale page."""

from __future__ import annotations

from pathlib import Path

from analyzer.explain import rule_markdown, rules_catalogue
from analyzer.rules import load_rules

REPO = Path(__file__).resolve().parents[1]
REGENERATE = (
    'python -c "from analyzer.rules import load_rules; from analyzer.explain import write_rule_docs; '
    "write_rule_docs(load_rules(), 'docs/rules')\""
)


def test_every_rule_has_a_current_doc_page():
    for rule in load_rules().rules:
        page = REPO / "docs" / "rules" / f"{rule.code}.md"
        assert page.exists(), f"missing {page}: {REGENERATE}"
        assert page.read_text(encoding="utf-8") == rule_markdown(rule), f"stale {page}: {REGENERATE}"


def test_readme_catalogue_matches_the_rules():
    table = rules_catalogue(load_rules(), "markdown")
    assert table in (REPO / "README.md").read_text(encoding="utf-8"), "README's rule table is stale"


def test_readme_quick_start_and_ci_agree():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    test_command = "python3 -m pip install -e '.[test]' && python3 -m pytest -q"
    assert test_command in readme and test_command in ci
    assert "python3 -m pip install . && wsadiag analyze samples/" in readme
