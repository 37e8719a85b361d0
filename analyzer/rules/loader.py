"""Finds, validates and compiles rule files into a RuleSet; applies --select/--ignore."""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer.errors import RuleError, UsageError
from analyzer.model import CONFIDENCES, LEVELS
from analyzer.rules.engine import FROM_ICMP, ErrorSpec, Rule, RuleSet, check_placeholder, template_names
from analyzer.rules.language import MAX_STEPS, compile_pattern, compile_where, icmp_names, uses_ab, where_facts
from analyzer.rules.source import MAX_RULE_BYTES, Source, parse, read
from analyzer.rules.tables import OPERATIONS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The sections every rule doc has, in this order (ruff's "what it does / why / example").
DOC_SECTIONS = ("## What it detects", "## Why it happens", "## What each side sees", "## Example")

_SELECTOR = re.compile(r"^[A-Z]{1,5}[0-9]{0,3}$")
_REPO_RULES = Path(__file__).resolve().parents[2] / "rules"


@functools.cache
def _validator():
    try:
        import json
        from importlib import resources

        import jsonschema
    except ImportError:  # the compiler's own checks still catch every malformed rule
        return None
    schema = json.loads(resources.files("analyzer.rules").joinpath("schema.json").read_text("utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _dotted(path: Iterable) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _size_check(src: Source) -> None:
    # Before the schema walks them: a sequence far past the limit is refused at once.
    m = src.data.get("match")
    if not isinstance(m, dict):
        return
    places: list[tuple[tuple[str | int, ...], object]] = [(("match", "sequence"), m.get("sequence"))]
    alts = m.get("any_of")
    if isinstance(alts, list):
        places += [
            (("match", "any_of", i, "sequence"), a.get("sequence"))
            for i, a in enumerate(alts[:64])
            if isinstance(a, dict)
        ]
    for where, seq in places:
        if isinstance(seq, list) and len(seq) > MAX_STEPS:
            raise src.error(where, f"{_dotted(where)}: {len(seq)} steps; at most {MAX_STEPS} allowed")


def _schema_check(src: Source) -> None:
    _size_check(src)
    validator = _validator()
    if validator is None:
        return
    errors = list(validator.iter_errors(src.data))
    if not errors:
        return
    err = min(errors, key=lambda e: (src.line(tuple(e.absolute_path)), -len(e.absolute_path)))
    while err.context:  # oneOf/anyOf: report the branch that got furthest
        err = max(err.context, key=lambda e: len(e.absolute_path))
    where = tuple(err.absolute_path)
    inside_step = any(p in ("sequence", "until") for p in where) and err.validator == "additionalProperties"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = set(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in known]
        key = extra[0] if extra else "?"
        last = where[-1] if where else ""
        what = (
            "unknown step predicate"
            if inside_step and isinstance(last, int) or last == "until"
            else "unknown where condition"
            if last == "where"
            else "unknown key"
        )
        raise src.error(
            where + (key,), f"{_dotted(where + (key,))}: {what} {key!r} (known: {', '.join(sorted(known))})"
        )
    if err.validator in ("maxItems", "minItems") and isinstance(err.instance, list):
        what = "steps" if where and where[-1] == "sequence" else "items"
        bound = "at most" if err.validator == "maxItems" else "at least"
        raise src.error(where, f"{_dotted(where)}: {len(err.instance)} {what}; {bound} {err.validator_value} allowed")
    message = err.message if len(err.message) <= 200 else err.message[:200] + "..."
    raise src.error(where, f"{_dotted(where)}: {message}")


# What every rule file must have, and the values of its enumerated keys. schema.json says the same
# for extra rules; tests/test_rules.py holds the two to agreement.
REQUIRED_KEYS: tuple[str, ...] = (
    "code",
    "name",
    "title",
    "level",
    "status",
    "message",
    "match",
    "errors",
    "cause",
    "remedy",
    "confidence",
    "falsepositives",
    "references",
    "samples",
    "doc",
)
STATUSES: tuple[str, ...] = ("stable", "experimental")
ENUMS: tuple[tuple[str, tuple[str, ...]], ...] = (("level", LEVELS), ("status", STATUSES), ("confidence", CONFIDENCES))


def _own_checks(src: Source, file_name: str | None) -> None:
    d = src.data
    for key in REQUIRED_KEYS:
        if key not in d:
            raise src.error((), f"missing required key {key!r}")
    for key in ("code", "name", "title", "message", "cause", "remedy", "doc"):
        if not isinstance(d[key], str) or not d[key].strip():
            raise src.error((key,), f"{key} must be non-empty text")
    if not re.fullmatch(r"[A-Z]{2,5}[0-9]{3}", d["code"]):
        raise src.error(("code",), f"code {d['code']!r} must be a family prefix and 3 digits, e.g. RST003")
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", d["name"]):
        raise src.error(("name",), f"name {d['name']!r} must be kebab-case, e.g. stray-ack-after-fin")
    for key, allowed in ENUMS:
        if d[key] not in allowed:
            raise src.error((key,), f"{key} must be one of {', '.join(allowed)}, not {d[key]!r}")
    if file_name is not None and file_name != f"{d['code']}-{d['name']}.yaml":
        raise src.error(("code",), f"file is named {file_name!r} but the rule is {d['code']}-{d['name']}.yaml")
    pos = 0
    for section in DOC_SECTIONS:
        found = d["doc"].find(section, pos)
        if found < 0:
            raise src.error(
                ("doc",), f"doc lacks the section {section!r} (sections, in order: {', '.join(DOC_SECTIONS)})"
            )
        pos = found + len(section)
    for key in ("falsepositives", "references"):
        if not isinstance(d[key], list) or not all(isinstance(x, str) and x.strip() for x in d[key]):
            raise src.error((key,), f"{key} must be a list of text")
    s = d["samples"]
    if not isinstance(s, dict) or set(s) - {"fires", "silent"}:
        raise src.error(("samples",), "samples is {fires: [samples/...], silent: [samples/...]}")
    for key in ("fires", "silent"):
        v = s.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x.startswith("samples/") for x in v):
            raise src.error(("samples", key), "sample paths are a list of samples/NAME.pcap")


def _errors(src: Source, raw: object, family_ok: bool) -> tuple[ErrorSpec, ...]:
    from analyzer import winsock  # the socket-error catalogue names the valid Winsock errors

    if not isinstance(raw, list):
        raise src.error(("errors",), "errors is a list of {side, operation, winsock}")
    out = []
    for i, e in enumerate(raw):
        at = ("errors", i)
        if not isinstance(e, dict):
            raise src.error(at, "an error is {side: A, operation: recv, winsock: WSAECONNRESET}")
        for key in ("side", "operation", "winsock"):
            if key not in e:
                raise src.error(at, f"error entry lacks {key!r}")
        if e["side"] not in ("A", "B", "client", "server"):
            raise src.error(at + ("side",), f"side must be A, B, client or server, not {e['side']!r}")
        if e["side"] in ("A", "B") and not family_ok:
            raise src.error(at + ("side",), "the match pins no A/B binding: name client or server")
        if e["operation"] not in OPERATIONS:
            raise src.error(
                at + ("operation",), f"unknown operation {e['operation']!r} (known: {', '.join(sorted(OPERATIONS))})"
            )
        name = e["winsock"]
        if not isinstance(name, str):
            raise src.error(at + ("winsock",), "winsock is an error name like WSAECONNRESET")
        try:
            if name != FROM_ICMP:
                winsock.lookup(name)
        except UsageError as exc:
            raise src.error(at + ("winsock",), f"unknown Winsock error {name!r}: {exc}") from None
        note = e.get("note", "")
        if not isinstance(note, str):
            raise src.error(at + ("note",), "note is text")
        cond = icmp_names(src, at + ("if_icmp",), e["if_icmp"]) if "if_icmp" in e else None
        if "if_icmp" in e and cond is None:
            raise src.error(at + ("if_icmp",), "if_icmp: any is always true; leave it out")
        handshake = e.get("if_handshake")
        if handshake is not None and not isinstance(handshake, bool):
            raise src.error(at + ("if_handshake",), "if_handshake is true or false")
        out.append(ErrorSpec(e["side"], e["operation"], name, note, cond, handshake))
    return tuple(out)


def compile_rule(src: Source, file_name: str | None = None, *, check_schema: bool = True) -> Rule:
    """Validates a parsed rule file and compiles its match for each binding of A and B.

    check_schema=False skips the JSON Schema (and importing jsonschema): for the built-in rules,
    which tests/test_rules.py holds to the schema, so a run does not pay for it.
    """
    if isinstance(src.data, dict) and "supersedes" in src.data:
        raise src.error(
            ("supersedes",),
            "supersedes is no longer part of a rule: which diagnosis leads is decided by one list, "
            "rules/precedence.yaml (a rule it does not name ranks before the generic findings)",
        )
    if check_schema:
        _schema_check(src)
    _own_checks(src, file_name)
    d = src.data
    m = d["match"]
    if not isinstance(m, dict):
        raise src.error(("match",), "match is a mapping with `sequence` (or `any_of`) and optional `where`")
    if ("sequence" in m) == ("any_of" in m):
        raise src.error(("match",), "match has either `sequence` or `any_of`, not both and not neither")
    pin = m.get("A")
    if pin is not None and pin not in ("client", "server"):
        raise src.error(("match", "A"), "`A:` pins A to `client` or `server`")
    body = {k: v for k, v in m.items() if k != "A"}
    symmetric = uses_ab(body) or uses_ab(d["errors"])
    dirs = (0 if pin == "client" else 1,) if pin else ((0, 1) if symmetric else (0,))
    bindings = []
    for a_dir in dirs:
        outer = compile_where(src, ("match", "where"), m["where"], a_dir) if "where" in m else []
        facts = where_facts(m.get("where"))
        if "any_of" in m:
            alts = m["any_of"]
            if not isinstance(alts, list) or not alts or len(alts) > 8:
                raise src.error(("match", "any_of"), "any_of is a list of 1 to 8 {sequence, where, until}")
            pats = []
            for i, alt in enumerate(alts):
                if not isinstance(alt, dict) or "sequence" not in alt:
                    raise src.error(("match", "any_of", i), "each alternative has a `sequence`")
                pats.append(compile_pattern(src, ("match", "any_of", i), alt, a_dir, outer, facts))
        else:
            inner = {k: v for k, v in m.items() if k in ("sequence", "until")}
            pats = [compile_pattern(src, ("match",), inner, a_dir, outer, facts)]
        bindings.append((a_dir, tuple(pats)))
    steps = min(p.positives for p in bindings[0][1])
    for name in template_names(d["message"]):
        why = check_placeholder(name, steps)
        if why:
            raise src.error(("message",), why)
    errors = _errors(src, d["errors"], symmetric or pin is not None)
    return Rule(
        code=d["code"],
        name=d["name"],
        title=d["title"].strip(),
        level=d["level"],
        status=d["status"],
        message=d["message"].strip(),
        doc=d["doc"],
        cause=d["cause"].strip(),
        remedy=d["remedy"].strip(),
        confidence=d["confidence"],
        falsepositives=tuple(d["falsepositives"]),
        references=tuple(d["references"]),
        samples={"fires": tuple(d["samples"].get("fires", ())), "silent": tuple(d["samples"].get("silent", ()))},
        errors=errors,
        path=src.path,
        bindings=tuple(bindings),
        lines={"code": src.line(("code",))},
    )


PRECEDENCE_FILE = "precedence.yaml"  # in rules/: the order in which diagnoses lead (not a rule)


@functools.cache
def precedence() -> tuple[str, ...]:
    """The precedence list of rules/precedence.yaml: rule codes, the one that leads first."""
    name = f"rules/{PRECEDENCE_FILE}"
    # parsed with the rule files, so that it too comes from the cache and a start-up needs no YAML parser
    src = next((s for s in _builtin_sources() if s.path == name), None) or parse(_precedence_text(), name)
    order = src.data.get("order")
    if not isinstance(order, list) or not all(isinstance(c, str) for c in order) or len(set(order)) != len(order):
        raise src.error(("order",), "order is a list of distinct rule codes")
    return tuple(order)


def _precedence_text() -> str:
    return _rules_folder().joinpath(PRECEDENCE_FILE).read_text("utf-8")


@functools.cache
def _builtin_sources() -> tuple[Source, ...]:
    """The built-in rule files, then rules/precedence.yaml (if readable), parsed once per edit (rules/cache.py)."""
    from analyzer.rules.cache import parsed

    files = sorted(_builtin_files())
    try:
        files.append((f"rules/{PRECEDENCE_FILE}", _precedence_text()))
    except OSError:
        pass  # precedence() reports it
    return tuple(parsed(files, parse))


def _builtin_files() -> list[tuple[str, str]]:
    root = _rules_folder()
    if not root.is_dir():
        return []
    return [
        (f"rules/{p.name}", p.read_text("utf-8"))
        for p in root.iterdir()  # not an editor's hidden lock or backup files
        if p.name.endswith(".yaml") and not p.name.startswith(".") and p.name != PRECEDENCE_FILE
    ]


@functools.cache
def _rules_folder() -> Traversable:
    """Where the built-in rule files are: installed, the top-level rules/ folder is packaged as
    analyzer._rules beside this package; in a checkout (editable or not) it is the repository's
    rules/ folder, known by its precedence.yaml.

    Both are looked up as paths first: importlib.resources, which also finds the folder inside a
    zip, costs a few ms of every start-up to import.
    """
    beside = Path(__file__).resolve().parents[1] / "_rules"
    if beside.is_dir():
        return beside
    if (_REPO_RULES / PRECEDENCE_FILE).is_file():
        return _REPO_RULES
    from importlib import resources

    try:
        return resources.files("analyzer._rules")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return _REPO_RULES  # not there either: no built-in rules (a broken install)


@functools.cache
def builtin_rules() -> tuple[Rule, ...]:
    """The rules shipped with wsadiag, compiled once per process (parsed once per edit: rules/cache.py)."""
    out = []
    for src in _builtin_sources():
        if src.path != f"rules/{PRECEDENCE_FILE}":
            out.append(compile_rule(src, src.path.rsplit("/", 1)[-1], check_schema=False))
    return tuple(out)


def folder_rule_files(folder: Path) -> list[Path]:
    """The rule files a folder given with --rules holds: its *.yaml, then its *.yml."""
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def _extra_files(dirs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            files += folder_rule_files(p)
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"rule directory not found: {d}", hint="--rules takes a folder of *.yaml rule files")
    for f in files:
        _check_rule_file(f)
    return files


def _check_rule_file(path: Path) -> None:
    """Refuse, before reading it, a rule file that is not a regular file or is too big to be one rule.

    A FIFO would hang the read, a link to /dev/zero would never end, and a huge file would be
    held whole in memory before its size could be judged.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise RuleError(f"{path}:1: cannot read rule file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RuleError(f"{path}:1: not a regular file; a rule file is a YAML file")
    if st.st_size > MAX_RULE_BYTES:
        raise RuleError(
            f"{path}:1: file is larger than {MAX_RULE_BYTES // 1024} KiB ({st.st_size} bytes); a rule file is one rule"
        )
    try:
        raw = path.read_bytes()[: MAX_RULE_BYTES + 1]
    except OSError as exc:
        raise RuleError(f"{path}:1: cannot read rule file: {exc.strerror or exc}") from None
    depth, line = _flow_depth(raw)
    if depth > MAX_RULE_NESTING:
        raise RuleError(f"{path}:{line}: nested more than {MAX_RULE_NESTING} levels deep; a rule is never so deep")


# A rule is a few levels deep. libyaml's composer recurses in C once per level: tens of thousands
# of `[` crash the interpreter outright, so deep flow nesting is refused before YAML sees it.
MAX_RULE_NESTING = 64


def _flow_depth(raw: bytes) -> tuple[int, int]:
    """The deepest nesting of [ and { in a file (quotes not considered: it errs on the safe side), and its line."""
    depth = deepest = 0
    line = where = 1
    for byte in raw:
        if byte in b"[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif byte in b"]}":
            depth = max(0, depth - 1)
        elif byte == 0x0A:
            line += 1
    return deepest, where


def _selected(code: str, select: list[str], ignore: list[str]) -> bool:
    # Like ruff: the most specific selector (longest prefix) decides; select wins a tie.
    best_sel = max((len(s) for s in select if code.startswith(s)), default=-1)
    best_ign = max((len(s) for s in ignore if code.startswith(s)), default=-1)
    return best_sel >= 0 and best_sel >= best_ign


def _selectors(raw: Iterable[str], codes: list[str], option: str) -> list[str]:
    out = []
    for token in raw:
        for part in str(token).split(","):
            s = part.strip().upper()
            if not s:
                continue
            if s == "ALL":
                out.append("")
                continue
            if not _SELECTOR.match(s) or not any(c.startswith(s) for c in codes):
                raise UsageError(
                    f"{option}: unknown rule code or prefix {part.strip()!r}",
                    hint="`wsadiag rules` lists the rule codes",
                )
            out.append(s)
    return out


def load_rules(
    extra_dirs: Iterable[str | Path] = (), select: Iterable[str] = (), ignore: Iterable[str] = ()
) -> RuleSet:
    """The built-in rules plus every *.yaml in extra_dirs, filtered by select/ignore codes or prefixes."""
    rules = list(builtin_rules())
    for path in _extra_files(extra_dirs):
        rules.append(compile_rule(read(path), path.name))
    seen: dict[str, Rule] = {}
    names: dict[str, Rule] = {}
    for r in rules:
        if r.code in seen:
            raise RuleError(f"{r.path}:{_code_line(r)}: duplicate rule code {r.code} (also in {seen[r.code].path})")
        if r.name in names:
            other = names[r.name]
            where = f"{r.path}:{_code_line(r)}"
            raise RuleError(f"{where}: duplicate rule name {r.name} (also {other.code} in {other.path})")
        seen[r.code] = r
        names[r.name] = r
    codes = sorted(seen)
    sel = _selectors(select, codes, "--select") or [""]
    ign = _selectors(ignore, codes, "--ignore")
    return RuleSet([r for r in rules if _selected(r.code, sel, ign)], precedence())


def _code_line(rule: Rule, key: str = "code") -> int:
    return rule.lines.get(key, rule.lines.get("code", 1))
