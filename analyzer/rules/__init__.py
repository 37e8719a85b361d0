"""The rule engine: loads rules/*.yaml, validates and compiles them, and evaluates conversations.

rs = load_rules(extra_dirs=(), select=(), ignore=())
rs.rules, rs.get("RST003"), rs.evaluate(conversation) -> list[Finding]
vocabulary_markdown() -> the documented rule language
"""

from analyzer.rules.engine import Rule, RuleSet
from analyzer.rules.language import vocabulary_markdown
from analyzer.rules.loader import DOC_SECTIONS, builtin_rules, load_rules

__all__ = ["DOC_SECTIONS", "Rule", "RuleSet", "builtin_rules", "load_rules", "vocabulary_markdown"]
