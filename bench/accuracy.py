"""How often wsadiag's answer is right, on captures whose truth is known: an accuracy table.

Usage: python bench/accuracy.py [--corpus ../shared/corpus] [--notes] [--code CHECKOUT]

Truth comes from two places:
- every sample in samples/ (its sidecar lists the findings it must produce and the rules that
  must stay silent);
- the corpus captures named in bench/accuracy_truth.yaml (answers read off the packets by hand).

For each expected finding the leading rule of wsadiag's finding on it is compared with the truth:
- found:       the expected rule leads a finding;
- wrong cause: a finding is there, but another rule leads it (the expected one at most "also
               consistent with");
- missed:      no finding for it at all;
- false alarm: an error or warning finding where none is expected (healthy captures, near-miss
               samples, findings beyond the expected ones).
Besides, every conversation of every corpus capture whose end is abnormal (a RST, an unanswered
SYN, data never acknowledged, an ICMP error, a handshake cut short) and has no finding counts as
"silent" (tests/test_completeness.py holds that at zero).

It prints a table per rule and per class and one summary line. This is a measurement, not a test:
it never fails; run it before and after a change (`--code OTHER_CHECKOUT` measures another
checkout's analyzer against this checkout's samples and truth).
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
_code = sys.argv[sys.argv.index("--code") + 1] if "--code" in sys.argv[:-1] else str(REPO)
sys.path.insert(0, str(REPO / "tests"))  # tests/test_completeness.py: the abnormal-end definition
sys.path.insert(0, _code)

from analyzer.pipeline import analyze_capture  # noqa: E402
from analyzer.rules import load_rules  # noqa: E402

OUTCOMES = ("found", "wrong cause", "missed", "false alarm")
LOUD = ("error", "warning")


@dataclass
class Tally:
    """Outcome counts per rule and per class."""

    by_rule: dict[str, collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    by_class: dict[str, collections.Counter] = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    silent: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, rule: str, klass: str, outcome: str, note: str = "") -> None:
        self.by_rule[rule][outcome] += 1
        self.by_class[klass][outcome] += 1
        if note and outcome != "found":
            self.notes.append(f"{outcome}: {note}")


def _judge(tally: Tally, where: str, klass: str, expect: list[str], silent_for: set[str], findings) -> None:
    """Match expected leading rules to findings (a rule's findings first, then any other)."""
    left = list(findings)
    for rule in expect:
        hit = next((f for f in left if f.rule == rule), None)
        if hit is not None:
            left.remove(hit)
            tally.add(rule, klass, "found")
            continue
        other = left[0] if left else None  # a finding is there, led by another rule
        if other is not None:
            left.remove(other)
            tally.add(rule, klass, "wrong cause", f"{where}: {rule} expected, {other.rule} leads")
        else:
            tally.add(rule, klass, "missed", f"{where}: {rule} expected, no finding")
    for f in left:
        if f.level in LOUD or f.rule in silent_for:
            tally.add(f.rule, klass, "false alarm", f"{where}: {f.rule} ({f.level}) not expected")


def _samples(tally: Tally, rules) -> None:
    for sidecar in sorted((REPO / "samples").glob("*.yaml")):
        capture = next((p for p in sidecar.parent.glob(sidecar.stem + ".*") if p.suffix != ".yaml"), None)
        if capture is None:
            continue
        spec = yaml.safe_load(sidecar.read_text())
        if "peer" in spec:
            continue  # a two-capture sample: judged by tests/test_peer.py
        result = analyze_capture(capture, rules)
        expect = [e["rule"] for e in spec.get("expect") or []]
        klass = "sample: " + (expect[0][:3] if expect else "near-miss")
        _judge(tally, f"samples/{capture.name}", klass, expect, set(spec.get("silent_for") or []), result.findings)


def _corpus(tally: Tally, rules, corpus: Path) -> None:
    from test_completeness import abnormal_end

    truth = yaml.safe_load((REPO / "bench" / "accuracy_truth.yaml").read_text())["captures"]
    for rel, spec in truth.items():
        path = corpus / rel
        if not path.exists():
            tally.notes.append(f"skipped: {rel} is not in the corpus")
            continue
        result = analyze_capture(path, rules)
        expect = list(spec.get("expect") or [])
        _judge(tally, rel, "corpus: " + spec["class"], expect, set(), result.findings)
    for path in sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".cap", ".gz")):
        result = analyze_capture(path, rules, keep="all-full")
        with_finding = {f.conversation for f in result.findings}
        for conv in result.conversations:
            if abnormal_end(conv) and conv.id not in with_finding:
                tally.silent += 1
                tally.notes.append(f"silent: {path.relative_to(corpus)} conversation {conv.id} ({abnormal_end(conv)})")


def _table(title: str, rows: dict[str, collections.Counter]) -> list[str]:
    out = [f"| {title} | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|"]
    for key in sorted(rows):
        out.append(f"| {key} | " + " | ".join(str(rows[key][o]) for o in OUTCOMES) + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"))
    parser.add_argument("--notes", action="store_true", help="list every miss, wrong cause and false alarm")
    parser.add_argument("--code", default=str(REPO), help="the checkout whose analyzer is measured")
    args = parser.parse_args(argv)
    rules = load_rules()
    tally = Tally()
    _samples(tally, rules)
    corpus = Path(args.corpus)
    if corpus.is_dir():
        _corpus(tally, rules, corpus)
    else:
        tally.notes.append(f"corpus not found at {corpus}: samples only")
    total = collections.Counter()
    for counts in tally.by_class.values():
        total.update(counts)
    judged = total["found"] + total["wrong cause"] + total["missed"]
    print("\n".join(_table("class", tally.by_class)))
    print()
    print("\n".join(_table("rule", tally.by_rule)))
    print()
    share = f"{100 * total['found'] / judged:.1f}%" if judged else "n/a"
    print(
        f"accuracy: {total['found']} of {judged} known failures found with the right cause ({share}); "
        f"{total['wrong cause']} wrong cause, {total['missed']} missed, {total['false alarm']} false alarms; "
        f"{tally.silent} abnormal corpus conversations without a finding"
    )
    if args.notes:
        print()
        print("\n".join(tally.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
