"""`wsadiag conversations` streams its listing: memory stays flat however many conversations there are.

Bound: 100,000 refused connections (about 1,000 alive at once), listed in each format, grow the
process's peak resident memory by less than 24 MiB (measured from /proc, in a fresh interpreter),
and a quarter of them takes within 8 MiB of that. Kept until the end, as before, the listing held
every conversation: about 1.5 KiB each, 150 MiB for these.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from analyzer.cli import main
from tests.corpus import CORPUS
from tests.test_resources import SERVER, linux_only, record, tcp_frame, write_pcap

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20
COUNT = 100_000


def refused(i: int):
    """The i-th of many connection attempts refused with a RST, from 1,000 hosts on fresh ports."""
    client = bytes([10, 2, (i % 1000) >> 8, i & 255])
    port = 1024 + (i // 1000) % 60000
    yield record(2 * i, tcp_frame(client, SERVER, port, 443, i * 7919, 0, 0x02), per_second=400)
    yield record(2 * i + 1, tcp_frame(SERVER, client, 443, port, 0, i * 7919 + 1, 0x14), per_second=400)


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stream") / "refused.pcap"
    return write_pcap(path, (rec for i in range(COUNT) for rec in refused(i)))


def child_growth(args: list[str]) -> int:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from analyzer.cli import main

        def status(field):
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        import analyzer.pipeline, analyzer.report.stream, analyzer.flows.table  # imports are not the listing
        base = status("VmRSS")
        code = main({args!r})
        print(code, status("VmHWM") - base)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    code, growth = proc.stdout.split()[-2:]
    assert code == "0"
    return int(growth)


@linux_only
@pytest.mark.parametrize("fmt", ["text", "jsonl", "json"])
def test_listing_memory_stays_flat(fmt, many, tmp_path):
    out = tmp_path / f"list.{fmt}"
    growth = child_growth(["conversations", "--no-progress", "--format", fmt, "-o", str(out), str(many)])
    assert growth < 24 * MB, f"grew {growth / MB:.0f} MiB"
    if fmt == "jsonl":  # flat: a quarter of the conversations takes about as much
        quarter = tmp_path / "quarter.pcap"
        write_pcap(quarter, (rec for i in range(COUNT // 4) for rec in refused(i)))
        small = child_growth(["conversations", "--no-progress", "--format", fmt, "-o", str(out), str(quarter)])
        assert growth - small < 8 * MB, f"{small / MB:.0f} MiB for {COUNT // 4}, {growth / MB:.0f} MiB for {COUNT}"
        out = tmp_path / f"list.{fmt}"
        child_growth(["conversations", "--no-progress", "--format", fmt, "-o", str(out), str(many)])
    text = out.read_text()
    if fmt == "json":
        doc = json.loads(text)
        assert len(doc["captures"][0]["conversations"]) == COUNT
        assert doc["captures"][0]["conversation_count"] == COUNT
    elif fmt == "jsonl":
        assert sum(1 for line in text.splitlines() if json.loads(line)["kind"] == "conversation") == COUNT
    else:
        assert text.rstrip().endswith(f"{COUNT} conversations in 1 capture")
        assert text.count(" REJ ") == COUNT


@pytest.mark.parametrize("fmt", ["text", "jsonl", "json"])
def test_streamed_listing_has_what_the_batch_listing_had(fmt, capsys):
    """The same conversations and capture facts as the whole-result renderers give (order aside).

    The listing builds its conversations without packet rows (FlowTable's `timeline` off); the
    batch one builds them whole: every sample must list the same either way."""
    from analyzer.pipeline import analyze_capture
    from analyzer.report import ReportOptions, render

    samples = sorted(str(p) for p in (REPO / "samples").glob("*.pcap*"))
    samples = samples if fmt == "json" else samples[:12]
    assert main(["conversations", "--no-progress", "--format", fmt, *samples]) == 0
    streamed = capsys.readouterr().out
    batch = render(fmt, [analyze_capture(p, keep="all") for p in samples], ReportOptions(conversations_only=True))
    if fmt == "json":
        a, b = json.loads(streamed), json.loads(batch)
        for ca, cb in zip(a["captures"], b["captures"], strict=True):
            assert sorted(ca["conversations"], key=lambda c: c["id"]) == cb["conversations"]
            assert {k: v for k, v in ca.items() if k != "conversations"} == {
                k: v for k, v in cb.items() if k != "conversations"
            }
        assert a["version"] == b["version"] and a["summary"] == b["summary"]
    elif fmt == "jsonl":
        assert sorted(streamed.splitlines()) == sorted(batch.splitlines())
    else:
        assert streamed.splitlines()[-1] == batch.splitlines()[-1]
        for row in (line.split() for line in batch.splitlines() if line.startswith("  ") and line.split()[0].isdigit()):
            assert any(line.split() == row for line in streamed.splitlines())


@pytest.mark.parametrize("where", ["samples", "corpus"])
def test_a_listing_row_is_the_json_text_of_the_conversation_byte_for_byte(where):
    """The JSON listing writes each row directly (jsondoc.conversation_json) rather than through a
    dictionary and the json module: the same text, key order, spacing and number spelling, for every
    conversation of every sample and corpus capture (a stray space would change every row a user
    greps)."""
    from analyzer.cli import expand_captures
    from analyzer.report.jsondoc import conversation_dict, conversation_json
    from analyzer.scale import Job, analyze_task

    folder = REPO / "samples" if where == "samples" else CORPUS
    if not folder.is_dir():
        pytest.skip(f"corpus not found at {folder}")
    encode = json.JSONEncoder(ensure_ascii=False).encode
    rows = 0
    for capture in expand_captures([str(folder)]):
        _, ended = analyze_task(capture, Job(keep="all", rules=False, listing=True))
        for conv in ended:
            assert conversation_json(conv) == encode(conversation_dict(conv)), capture
            rows += 1
    assert rows > 100
    for end in (float("nan"), float("inf")):  # a time no capture should give, spelt as json spells it
        odd = dataclasses.replace(conv, end=end)
        assert conversation_json(odd) == encode(conversation_dict(odd))


def test_interrupted_listing_is_still_a_whole_document(monkeypatch, tmp_path, capsys):
    """Ctrl-C during a streamed JSON listing: exit 2, and the JSON written so far is closed properly."""
    import analyzer.pipeline as pipeline

    real = pipeline.analyze_capture
    calls = []

    def interrupted_on_second(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "analyze_capture", interrupted_on_second)
    samples = sorted(str(p) for p in (REPO / "samples").glob("*.pcap"))[:3]
    out = tmp_path / "l.json"
    # --jobs 1: in this process, where the stand-in for analyze_capture is
    assert main(["conversations", "--no-progress", "--jobs", "1", "--format", "json", "-o", str(out), *samples]) == 2
    doc = json.loads(out.read_text())
    assert [c["path"] for c in doc["captures"]][0] == samples[0]
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("extra, status", [([], 0), (["no-such-capture.pcap"], 2)])
def test_streamed_listing_into_a_closed_pipe_keeps_the_exit_status(extra, status, many):
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "conversations", "--no-progress", str(many), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.read(100)  # `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == status
    assert b"Traceback" not in err
