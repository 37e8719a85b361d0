"""The rule engine: loading and validation errors, selection, each step predicate, matching."""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from pathlib import Path

import pytest
import yaml

from analyzer.errors import RuleError, UsageError
from analyzer.model import MARKS, Mark, SideStats
from analyzer.rules import DOC_SECTIONS, load_rules, vocabulary_markdown
from analyzer.rules.engine import RuleSet
from analyzer.rules.language import PATH_CONDITIONS, STEP_PREDICATES
from analyzer.rules.loader import PRECEDENCE_FILE, builtin_rules, compile_rule, precedence
from analyzer.rules.source import read
from tests.rules_build import conv, ev

REPO = Path(__file__).resolve().parents[1]
RULE_FILES = sorted(p for p in (REPO / "rules").glob("*.yaml") if p.name != PRECEDENCE_FILE)

DOC = "\n".join(f"{s}\ntext\n" for s in DOC_SECTIONS)


def rule_text(code: str = "XYZ001", name: str = "test-rule", *, match: object = None,
              message: str = "{A} did it at frame {step1.frame}", errors: object = None,
              extra: dict | None = None) -> str:
    """A complete, valid rule file; tests replace one part to make it wrong."""
    body = {
        "code": code, "name": name, "title": "A test rule", "level": "error", "status": "experimental",
        "message": message,
        "match": match if match is not None else {"sequence": [{"from": "A", "flags": ["RST"]}]},
        "errors": errors if errors is not None else [{"side": "B", "operation": "recv", "winsock": "WSAECONNRESET"}],
        "cause": "c", "remedy": "r", "confidence": "low", "falsepositives": [], "references": [],
        "samples": {"fires": [], "silent": []}, "doc": DOC,
    }
    body.update(extra or {})
    return yaml.safe_dump(body, sort_keys=False)


def write(tmp_path: Path, text: str, code: str = "XYZ001", name: str = "test-rule") -> Path:
    p = tmp_path / f"{code}-{name}.yaml"
    p.write_text(text)
    return p


def load_one(tmp_path: Path, **kw):
    """Loads a single extra rule (selected alone) from a fresh folder."""
    write(tmp_path, rule_text(**kw), kw.get("code", "XYZ001"), kw.get("name", "test-rule"))
    return load_rules(extra_dirs=[tmp_path], select=[kw.get("code", "XYZ001")])


def error_of(tmp_path: Path, text: str, code: str = "XYZ001", name: str = "test-rule") -> str:
    path = write(tmp_path, text, code, name)
    with pytest.raises(RuleError) as exc:
        load_rules(extra_dirs=[tmp_path])
    msg = str(exc.value)
    assert msg.startswith(f"{path}:"), msg  # every load error names the file...
    assert re.match(rf"{re.escape(str(path))}:\d+: ", msg), msg  # ...and a line
    return msg


def line_of(msg: str) -> int:
    return int(msg.split(":")[1])


# --- the shipped catalogue ----------------------------------------------------------------

def test_builtin_catalogue_loads_in_code_order():
    rs = load_rules()
    codes = [r.code for r in rs.rules]
    catalogue = (REPO / "docs/CATALOGUE-PLAN.md").read_text()
    plan = re.findall(r"^\| ([A-Z]{3}\d{3}) \| ([a-z-]+) \| (\w+) \|", catalogue, re.M)
    assert codes == sorted(codes)
    assert {(r.code, r.name, r.level) for r in rs.rules} == set(plan)


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_shipped_rule_file_is_complete(path: Path):
    data = yaml.safe_load(path.read_text())
    assert path.name == f"{data['code']}-{data['name']}.yaml"
    for key in ("fires", "silent"):
        for sample in data["samples"][key]:
            assert (REPO / sample).is_file(), f"{path.name} names missing {sample}"
            assert (REPO / sample).with_suffix(".yaml").is_file(), f"{sample} has no sidecar"
    assert data["samples"]["fires"], "every rule names a sample that fires"
    assert all(len(x) > 20 for x in (data["cause"], data["remedy"]))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.stem)
def test_shipped_rule_file_passes_the_schema(path: Path):
    # A run skips the schema for the built-in rules; this is where they are held to it.
    compile_rule(read(path), path.name, check_schema=True)


def test_get_known_and_unknown_codes():
    rs = load_rules()
    assert rs.get("rst003").name == "stray-ack-after-fin"
    with pytest.raises(UsageError) as exc:
        rs.get("RST999")
    assert "wsadiag rules" in exc.value.hint


# --- select / ignore / extra dirs ----------------------------------------------------------

def codes(rs) -> list[str]:
    return [r.code for r in rs.rules]


def test_select_by_prefix_and_code():
    assert all(c.startswith("RST") for c in codes(load_rules(select=["RST"])))
    assert codes(load_rules(select=["RST003", "con001"])) == ["CON001", "RST003"]
    assert codes(load_rules(select=["RST00"])) == [f"RST00{i}" for i in range(1, 10)]


def test_ignore_and_most_specific_selector_wins():
    everything = codes(load_rules())
    assert codes(load_rules(ignore=["RST003"])) == [c for c in everything if c != "RST003"]
    assert codes(load_rules(select=["RST003"], ignore=["RST"])) == ["RST003"]
    rst_1x = [c for c in everything if c.startswith("RST") and not c.startswith("RST00")]
    assert "RST010" in rst_1x and "RST003" not in rst_1x
    assert codes(load_rules(select=["RST"], ignore=["RST00"])) == rst_1x
    assert codes(load_rules(select=["RST,TLS"], ignore=["ALL"])) == [c for c in everything if c[:3] in ("RST", "TLS")]


@pytest.mark.parametrize("bad", ["NOPE", "RST9", "R*"])
def test_unknown_selector_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        load_rules(select=[bad])
    with pytest.raises(UsageError):
        load_rules(ignore=[bad])


def test_extra_rules_dir_adds_rules(tmp_path):
    write(tmp_path, rule_text())
    rs = load_rules(extra_dirs=[tmp_path])
    assert "XYZ001" in codes(rs) and "RST003" in codes(rs)
    with pytest.raises(UsageError):
        load_rules(extra_dirs=[tmp_path / "missing"])


# --- load errors: file, line, what -------------------------------------------------------

def test_unknown_step_predicate(tmp_path):
    text = rule_text(match={"sequence": [{"from": "A", "flgs": ["RST"]}]})
    msg = error_of(tmp_path, text)
    assert "unknown step predicate 'flgs'" in msg
    assert line_of(msg) == text.splitlines().index(next(line for line in text.splitlines() if "flgs" in line)) + 1


@pytest.mark.parametrize("step, words", [
    ({"flags": ["RTS"]}, "unknown TCP flag 'RTS'"),
    ({"kind": "stray"}, "unknown packet kind 'stray'"),
    ({"payload": "gopher"}, "gopher"),
    ({"icmp": "moon-unreachable"}, "moon-unreachable"),
    ({"from": "C"}, "from"),
    ({"after_idle": "soon"}, "soon"),
    ({"after_idle": "99999d"}, "out of range"),
    ({"flags": ["RST"], "not_flags": ["RST"]}, "both required and forbidden"),
])
def test_bad_step_values(tmp_path, step, words):
    msg = error_of(tmp_path, rule_text(match={"sequence": [step]}))
    assert words in msg


def test_within_on_first_step_and_on_absent_step(tmp_path):
    msg = error_of(tmp_path, rule_text(match={"sequence": [{"flags": ["RST"], "within": "1s"}]}))
    assert "first step" in msg
    msg = error_of(tmp_path, rule_text(match={"sequence": [
        {"flags": ["SYN"]}, {"flags": ["FIN"], "absent": True, "within": "1s"}, {"flags": ["RST"]}]}))
    assert "absent" in msg


def test_unknown_placeholder_and_attribute_access_are_rejected(tmp_path):
    assert "unknown placeholder {B.__class__}" in error_of(tmp_path, rule_text(message="{B.__class__}"))
    assert "placeholder" in error_of(tmp_path, rule_text(message="gap {gapp}"))
    assert "step 2" in error_of(tmp_path, rule_text(message="{step2.frame}"))
    assert "step field" in error_of(tmp_path, rule_text(message="{step1.__dict__}"))


def test_unknown_winsock_name_and_operation(tmp_path):
    msg = error_of(tmp_path, rule_text(errors=[{"side": "B", "operation": "recv", "winsock": "WSAEBOGUS"}]))
    assert "WSAEBOGUS" in msg
    msg = error_of(tmp_path, rule_text(errors=[{"side": "B", "operation": "teleport", "winsock": "WSAECONNRESET"}]))
    assert "teleport" in msg


def test_duplicate_code_names_both_files(tmp_path):
    msg = error_of(tmp_path, rule_text(code="RST003", name="another-name"), "RST003", "another-name")
    assert "duplicate rule code RST003" in msg and "stray-ack-after-fin" in msg


def test_file_name_must_match_code_and_name(tmp_path):
    msg = error_of(tmp_path, rule_text(), "XYZ001", "other-name")
    assert "XYZ001-test-rule.yaml" in msg


def test_yaml_syntax_error_alias_and_duplicate_key(tmp_path):
    msg = error_of(tmp_path, rule_text() + "title: [unclosed\n")
    assert "not valid YAML" in msg
    text = rule_text().replace("cause: c", "cause: &x c").replace("remedy: r", "remedy: *x")
    assert "aliases" in error_of(tmp_path, text)
    msg = error_of(tmp_path, rule_text() + "level: info\n")
    assert "duplicate key 'level'" in msg and line_of(msg) == len(rule_text().splitlines()) + 1


def test_missing_doc_section_and_missing_key(tmp_path):
    msg = error_of(tmp_path, rule_text(extra={"doc": "## What it detects\nonly this\n"}))
    assert "## Why it happens" in msg
    text = "\n".join(line for line in rule_text().splitlines() if not line.startswith("remedy:"))
    assert "remedy" in error_of(tmp_path, text)


def test_supersedes_is_refused_with_a_pointer_to_the_precedence_list(tmp_path):
    assert "precedence.yaml" in error_of(tmp_path, rule_text(extra={"supersedes": ["RST001"]}))


def test_huge_rules_are_rejected_quickly(tmp_path):
    started = time.monotonic()
    msg = error_of(tmp_path, rule_text(match={"sequence": [{"flags": ["ACK"]} for _ in range(2000)]}))
    assert "steps" in msg
    path = write(tmp_path, "x: " + "a" * (100 * 1024))
    with pytest.raises(RuleError, match="larger than"):
        load_rules(extra_dirs=[tmp_path])
    path.unlink()
    assert time.monotonic() - started < 5


def test_longest_window_loads_and_a_long_chain_evaluates_fast(tmp_path):
    seq = [{"from": "A", "flags": ["ACK"]}] + [{"from": "A", "flags": ["ACK"], "within": "30d"} for _ in range(31)]
    rs = load_one(tmp_path, match={"sequence": seq})
    events = [ev(i, i * 0.01, 0, "A") for i in range(1, 400)]
    started = time.monotonic()
    findings = rs.evaluate(conv(events))
    assert time.monotonic() - started < 1
    assert findings and len(findings[0].frames) == 32


def test_schema_step_properties_match_the_vocabulary():
    schema = json.loads(resources.files("analyzer.rules").joinpath("schema.json").read_text())
    assert set(schema["$defs"]["step"]["properties"]) == set(STEP_PREDICATES)
    doc = vocabulary_markdown()
    for name in STEP_PREDICATES:
        assert f"| `{name}` |" in doc
    for m in MARKS:  # the vocabulary page lists every mark by the word rules and ladders use
        assert f"| `{m.word}` | {m.doc} |" in doc
    for mark in Mark:
        if mark.name.startswith("PATH_"):  # a packet's fate between two capture points: the `fate:` table
            assert f"| `{mark.name[5:].lower()}` |" in doc
    assert set(schema["$defs"]["pathcond"]["properties"]) == set(PATH_CONDITIONS)
    assert "`duplicate-ack`" in doc and "`port-unreachable`" in doc


def test_schema_and_loader_and_language_agree_on_the_vocabulary():
    # The JSON Schema checks extra rules; the loader and the language check every rule. They must
    # accept the same keys and values, or a rule would pass one and fail the other.
    from analyzer.model import CONFIDENCES, LEVELS
    from analyzer.rules.language import SIDE_CONDITIONS, SIDES, WHERE_CONDITIONS
    from analyzer.rules.loader import ENUMS, REQUIRED_KEYS

    schema = json.loads(resources.files("analyzer.rules").joinpath("schema.json").read_text())
    assert schema["required"] == list(REQUIRED_KEYS)
    assert {k: schema["properties"][k]["enum"] for k, _ in ENUMS} == {k: list(v) for k, v in ENUMS}
    assert dict(ENUMS)["level"] == LEVELS and dict(ENUMS)["confidence"] == CONFIDENCES
    where = {k for k in WHERE_CONDITIONS if " " not in k} | set(SIDES)
    assert set(schema["$defs"]["where"]["properties"]) == where
    assert set(schema["$defs"]["sidecond"]["properties"]) == set(SIDE_CONDITIONS)


# --- step predicates on hand-built timelines ---------------------------------------------

FIN_RST = [ev(1, 0.0, 0, "SA", 10), ev(2, 0.1, 1, "FA"), ev(3, 0.2, 0, "RA")]


@pytest.mark.parametrize("step, fires", [
    ({"from": "client", "flags": ["RST", "ACK"]}, True),
    ({"from": "server", "flags": ["RST"]}, False),
    ({"to": "server", "flags": ["RST"]}, True),
    ({"flags_exact": ["RST"]}, False),
    ({"flags_exact": ["RST", "ACK"]}, True),
    ({"flags_any": ["URG", "FIN"]}, True),
    ({"flags": ["FIN"], "not_flags": ["ACK"]}, False),
    ({"data": True, "from": "client"}, True),
    ({"data": True, "from": "server"}, False),
    ({"data": False, "flags": ["FIN"]}, True),
])
def test_flag_direction_and_data_predicates(tmp_path, step, fires):
    rs = load_one(tmp_path, match={"sequence": [step]}, message="x", errors=[])
    assert bool(rs.evaluate(conv(FIN_RST))) is fires


@pytest.mark.parametrize("step, fires", [
    ({"kind": "duplicate-ack"}, True),
    ({"kind": ["duplicate-ack", "acks-fin"]}, False),
    ({"kind_any": ["keepalive", "acks-fin"]}, True),
    ({"acks": "fin"}, True),
    ({"kind": "duplicate-ack", "not_kind": "ttl-odd"}, True),
    ({"kind": "ttl-odd"}, False),
])
def test_mark_predicates(tmp_path, step, fires):
    events = [ev(1, 0, 0, "A", marks=int(Mark.DUP_ACK)), ev(2, 0.1, 1, "A", marks=int(Mark.ACKS_FIN))]
    rs = load_one(tmp_path, match={"sequence": [step]}, message="x", errors=[])
    assert bool(rs.evaluate(conv(events))) is fires


def test_payload_predicate(tmp_path):
    rs = load_one(tmp_path, match={"sequence": [{"payload": ["tls-client-hello", "tds-prelogin"]}]},
                  message="x", errors=[])
    assert rs.evaluate(conv([ev(1, 0, 0, "PA", 200, payload="tls-client-hello")]))
    assert not rs.evaluate(conv([ev(1, 0, 0, "PA", 200, payload="http-request")]))


def test_icmp_names_resolve_per_family(tmp_path):
    rs = load_one(tmp_path, match={"sequence": [{"icmp": "port-unreachable"}]}, message="{icmp}", errors=[])
    v4 = conv([ev(1, 0, 0, "", 40), ev(2, 0.1, 1, icmp=(3, 3), icmp_src=bytes(4))], "udp")
    v6_port = conv([ev(1, 0, 0, "", 40), ev(2, 0.1, 1, icmp=(1, 4), icmp_src=bytes(16))], "udp", v6=True)
    v6_hop = conv([ev(1, 0, 0, "", 40), ev(2, 0.1, 1, icmp=(3, 3), icmp_src=bytes(16))], "udp", v6=True)
    assert rs.evaluate(v4)[0].message == "port-unreachable"
    assert rs.evaluate(v6_port)
    assert not rs.evaluate(v6_hop)  # ICMPv6 type 3 is time exceeded, not unreachable
    raw = load_rules(extra_dirs=[tmp_path], select=["XYZ"])
    assert raw.evaluate(v4)


def test_within_and_after_idle(tmp_path):
    seq = [{"from": "client", "data": True}, {"from": "server", "flags": ["RST"], "within": "500ms"}]
    rs = load_one(tmp_path, match={"sequence": seq}, message="{gap}", errors=[])
    fast = conv([ev(1, 0, 0, "PA", 5), ev(2, 0.2, 1, "RA")])
    slow = conv([ev(1, 0, 0, "PA", 5), ev(2, 0.9, 1, "RA")])
    assert rs.evaluate(fast)[0].message == "200 ms"
    assert not rs.evaluate(slow)
    # The latest candidate for the previous step is used, so a later data packet rescues the window.
    rescued = conv([ev(1, 0, 0, "PA", 5), ev(2, 0.8, 0, "PA", 5), ev(3, 0.9, 1, "RA")])
    assert rs.evaluate(rescued)[0].frames == (2, 3)

    rs2 = load_rules(extra_dirs=[_fresh(tmp_path, match={"sequence": [{"flags": ["RST"], "after_idle": "1m"}]},
                                        message="{idle}: {timeout_hint}", errors=[])], select=["XYZ"])
    idle = conv([ev(1, 0, 1, "PA", 5), ev(2, 350.5, 1, "RA")])
    f = rs2.evaluate(idle)
    assert f and "AWS Network Load Balancer" in f[0].message and f[0].message.startswith("350 s")
    assert not rs2.evaluate(conv([ev(1, 0, 1, "PA", 5), ev(2, 59, 1, "RA")]))


def _fresh(tmp_path: Path, **kw) -> Path:
    d = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    write(d, rule_text(**kw))
    return d


def test_absent_step_and_until(tmp_path):
    seq = [{"from": "client", "data": True}, {"from": "client", "flags": ["FIN"], "absent": True},
           {"from": "server", "flags": ["RST"]}]
    rs = load_rules(extra_dirs=[_fresh(tmp_path, match={"sequence": seq}, message="x", errors=[])], select=["XYZ"])
    assert rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 1, 1, "RA")]))
    assert not rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 0.5, 0, "FA"), ev(3, 1, 1, "RA")]))
    # A FIN before the data does not count: the gap is between the neighbouring steps only.
    assert rs.evaluate(conv([ev(1, 0, 0, "FA"), ev(2, 0.5, 0, "PA", 5), ev(3, 1, 1, "RA")]))

    trailing = [{"from": "client", "data": True}, {"from": "server", "absent": True, "flags": ["ACK"]}]
    rs = load_rules(extra_dirs=[_fresh(tmp_path, match={"sequence": trailing}, message="x", errors=[])], select=["XYZ"])
    assert rs.evaluate(conv([ev(1, 0, 1, "A"), ev(2, 1, 0, "PA", 5)]))
    assert not rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 1, 1, "A")]))

    until = {"sequence": [{"from": "client", "data": True}, {"from": "client", "data": True},
                          {"from": "server", "flags": ["RST"]}], "until": {"from": "server", "data": True}}
    rs = load_rules(extra_dirs=[_fresh(tmp_path, match=until, message="x", errors=[])], select=["XYZ"])
    assert rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 1, 0, "PA", 5), ev(3, 2, 1, "RA")]))
    assert not rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 1, 1, "PA", 5), ev(3, 2, 0, "PA", 5), ev(4, 3, 1, "RA")]))


def test_both_bindings_of_a_and_b(tmp_path):
    seq = [{"from": "A", "flags": ["FIN"]}, {"from": "B", "flags": ["RST"]}]
    errors = [{"side": "A", "operation": "recv", "winsock": "WSAECONNRESET"}]
    rs = load_one(tmp_path, match={"sequence": seq}, message="{A} is {A_role}; {B} reset", errors=errors)
    server_fin = conv([ev(1, 0, 1, "FA"), ev(2, 1, 0, "RA")])
    client_fin = conv([ev(1, 0, 0, "FA"), ev(2, 1, 1, "RA")])
    (f,) = rs.evaluate(server_fin)
    assert f.message == "192.0.2.2:443 is server; 192.0.2.1:50000 reset"
    assert [(e.side, e.endpoint) for e in f.errors] == [("server", "192.0.2.2:443")]
    (g,) = rs.evaluate(client_fin)
    assert [e.side for e in g.errors] == ["client"]


def test_an_error_is_claimed_only_for_the_side_the_wire_shows_it_for(tmp_path):
    # The rule (wrongly) gives the resetting side the error: the engine keeps it off that side.
    seq = [{"from": "A", "data": True}, {"from": "A", "flags": ["RST"]}]
    errors = [{"side": "A", "operation": "recv", "winsock": "WSAECONNRESET"},
              {"side": "B", "operation": "recv", "winsock": "WSAECONNRESET"}]
    rs = load_one(tmp_path, match={"sequence": seq}, message="x", errors=errors)
    (f,) = rs.evaluate(conv([ev(1, 0, 0, "PA", 5), ev(2, 1, 0, "RA")]))
    assert [e.side for e in f.errors] == ["server"]


def test_pinned_binding(tmp_path):
    seq = [{"from": "A", "flags": ["FIN"]}, {"from": "B", "flags": ["RST"]}]
    rs = load_one(tmp_path, match={"A": "client", "sequence": seq}, message="x")
    assert rs.evaluate(conv([ev(1, 0, 0, "FA"), ev(2, 1, 1, "RA")]))
    assert not rs.evaluate(conv([ev(1, 0, 1, "FA"), ev(2, 1, 0, "RA")]))


def test_where_conditions(tmp_path):
    match = {"where": {"proto": "tcp", "state": ["RSTR"], "handshake": True,
                       "server": {"sent_fin": False, "bytes": "> 100"}},
             "sequence": [{"flags": ["RST"]}]}
    rs = load_one(tmp_path, match=match, message="x", errors=[])
    ok = dict(state="RSTR", server_stats=SideStats(bytes=101))
    assert rs.evaluate(conv(FIN_RST, **ok))
    assert not rs.evaluate(conv(FIN_RST, state="SF", server_stats=SideStats(bytes=101)))
    assert not rs.evaluate(conv(FIN_RST, state="RSTR", server_stats=SideStats(bytes=100)))
    assert not rs.evaluate(conv(FIN_RST, state="RSTR", server_stats=SideStats(bytes=101, sent_fin=True)))
    assert not rs.evaluate(conv(FIN_RST, handshake=False, **ok))


def test_precedence_picks_one_finding_and_keeps_the_others_under_it(tmp_path):
    generic = rule_text("XYZ001", "generic", match={"sequence": [{"flags": ["RST"]}]}, message="any reset", errors=[])
    specific = rule_text("XYZ002", "specific", message="data then reset", errors=[],
                         match={"sequence": [{"data": True}, {"flags": ["RST"]}]})
    write(tmp_path, generic, "XYZ001", "generic")
    write(tmp_path, specific, "XYZ002", "specific")
    rules = load_rules(extra_dirs=[tmp_path], select=["XYZ"]).rules
    (f,) = RuleSet(rules, order=["XYZ002", "XYZ001"]).evaluate(conv(FIN_RST))
    assert (f.rule, [(a.rule, a.message) for a in f.also]) == ("XYZ002", [("XYZ001", "any reset")])
    (f,) = RuleSet(rules, order=["XYZ001", "XYZ002"]).evaluate(conv(FIN_RST))
    assert (f.rule, [a.rule for a in f.also]) == ("XYZ001", ["XYZ002"])
    (f,) = RuleSet(rules, order=["XYZ002", "XYZ001"]).evaluate(conv([ev(1, 0, 0, "RA")]))
    assert (f.rule, f.also) == ("XYZ001", ())


def test_a_rule_the_precedence_list_does_not_name_ranks_before_the_generic_findings():
    rank = load_rules().rank
    assert rank("RST001") < rank("XYZ123") < rank("GEN001")


def test_every_builtin_rule_has_one_place_in_the_precedence_list():
    assert sorted(precedence()) == sorted(r.code for r in builtin_rules())


def test_wireshark_filter_and_frames(tmp_path):
    rs = load_one(tmp_path, match={"sequence": [{"data": True}, {"flags": ["RST"]}]}, message="x", errors=[])
    (f,) = rs.evaluate(conv(FIN_RST))
    assert f.frames == (1, 3)
    assert f.wireshark_filter == "tcp.stream eq 3 && frame.number in {1, 3}"
    rs = load_rules()
    udp = conv([ev(4, 0, 0, "", 40), ev(5, 0.1, 1, icmp=(3, 3), icmp_src=bytes(4))], "udp", handshake=False)
    (u,) = rs.evaluate(udp)
    assert u.rule == "UDP001" and u.frames == (4, 5)
    assert u.wireshark_filter == ("ip.addr == 192.0.2.1 && ip.addr == 192.0.2.2 && udp.port == 50000"
                                  " && udp.port == 443 && frame.number in {4..5}")
    assert u.errors[0].winsock.name == "WSAECONNRESET" and "SIO_UDP_CONNRESET" in u.errors[0].note


def test_from_icmp_errors_follow_the_icmp_code():
    rs = load_rules(select=["CON003"])
    def attempt(icmp, v6=False):
        src = bytes(16 if v6 else 4)
        c = conv([ev(1, 0, 0, "S"), ev(2, 0.01, 1, icmp=icmp, icmp_src=src)], handshake=False, state="S0", v6=v6)
        (f,) = rs.evaluate(c)
        return [e.winsock.name for e in f.errors]
    assert attempt((3, 0)) == ["WSAENETUNREACH"]
    assert attempt((3, 1)) == ["WSAEHOSTUNREACH"]
    assert attempt((3, 3)) == ["WSAECONNREFUSED"]
    assert attempt((1, 4), v6=True) == ["WSAECONNREFUSED"]


def test_empty_timeline_and_unrelated_conversation():
    rs = load_rules()
    assert rs.evaluate(conv([ev(1, 0, 0, "S"), ev(2, 0.01, 1, "SA"), ev(3, 0.02, 0, "A")])) == []


def test_vocabulary_doc_is_up_to_date():
    # Regenerate with:
    # python -c "from analyzer.rules import vocabulary_markdown as v; print(v(), end='')" > docs/rules/vocabulary.md
    assert (REPO / "docs/rules/vocabulary.md").read_text() == vocabulary_markdown()
