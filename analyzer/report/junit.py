"""JUnit XML for CI test reporters (Jenkins, GitLab, GitHub test-report actions).

One testsuite per capture; one failing testcase per conversation with a finding at or above
--fail-on; the healthy rest summarised in one passing testcase. Built with xml.etree so capture
strings are always character data; characters XML 1.0 forbids are spelled \\xNN first.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import PurePath

from analyzer.model import CaptureResult
from analyzer.report.common import (
    at_or_above,
    clean,
    clean_block,
    conversation_total,
    conversations_by_id,
    display_path,
    findings_by_conversation,
    frame_ranges,
    xml_safe,
)
from analyzer.report.incidents import frame_times, iso_utc
from analyzer.report.options import ReportOptions


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: object) -> ET.Element:
    # clean(): CI viewers show these strings too, so no terminal controls or bidi overrides either
    node = ET.SubElement(parent, tag, {k: xml_safe(clean(v)) for k, v in attrs.items()})
    if text is not None:
        node.text = xml_safe(clean_block(text))
    return node


def suite_classname(path: str) -> str:
    """A capture's JUnit classname: 'wsadiag.' + its file name, with no path separators or dots.

    Test reporters split classnames at dots into packages and show path separators literally;
    the file name alone is stable however the capture is passed (relative, absolute, a glob).
    """
    name = PurePath(path.replace("\\", "/")).name if path != "-" else "stdin"
    return "wsadiag." + (re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "capture")


def _span(result: CaptureResult) -> tuple[float, float] | None:
    """First start and last end of the capture's conversations with findings (None without any)."""
    if not result.conversations:
        return None
    return min(c.start for c in result.conversations), max(c.end for c in result.conversations)


def render_junit(results: list[CaptureResult], opts: ReportOptions) -> str:
    """`--format junit`: <testsuites> with one <testsuite> per capture."""
    root = ET.Element("testsuites", {"name": "wsadiag"})
    total_tests = total_failures = total_errors = 0
    for result in results:
        name = display_path(result.path)
        suite = _el(root, "testsuite", name=name)
        tests = failures = errors = 0
        classname = suite_classname(result.path)
        span = _span(result)
        suite.set("time", f"{(span[1] - span[0]) if span else 0.0:.6f}")
        if span:  # JUnit's timestamp is a date-time without a zone; this one is UTC
            suite.set("timestamp", iso_utc(span[0])[:19])
        if result.error:
            case = _el(suite, "testcase", classname=classname, name="read capture", time="0")
            _el(case, "error", result.error, message=result.error, type="capture-error")
            tests, errors = 1, 1
        else:
            convs = conversations_by_id(result)
            failing = {
                cid: [f for f in fs if at_or_above(f.level, opts.fail_on)]
                for cid, fs in findings_by_conversation(result).items()
            }
            failing = {cid: fs for cid, fs in failing.items() if fs}
            for cid, findings in failing.items():
                conv = convs.get(cid)
                label = f"conversation {cid}"
                if conv is not None:
                    label += f" {conv.proto} {conv.client} -> {conv.server}"
                duration = f"{conv.duration:.6f}" if conv is not None else "0"
                case = _el(suite, "testcase", classname=classname, name=label, time=duration)
                first = findings[0]
                body: list[str] = []
                if conv is not None:
                    body.append(f"conversation started {iso_utc(conv.start)}")
                for f in findings:
                    body.append(f"{f.level.upper()} {f.rule} {f.name}: {f.title}")
                    body.append(f"  {f.message}")
                    for e in f.errors:
                        body.append(
                            f"  {e.side} {e.endpoint} {e.operation}: {e.winsock.code} "
                            f"{e.winsock.name} / {e.posix.name or '-'}"
                        )
                    body.append(f"  cause: {f.cause}")
                    body.append(f"  remedy: {f.remedy}")
                    body.append(f"  frames {frame_ranges(f.frames)}; wireshark: {f.wireshark_filter}")
                    times = [iso_utc(t) for t in frame_times(conv, f) if t is not None]
                    if times:
                        body.append(f"  evidence times: {', '.join(times)}")
                    for alt in f.also:
                        body.append(f"  also consistent with: {alt.rule} {alt.name}: {alt.message}")
                _el(case, "failure", "\n".join(body), message=f"{first.rule} {first.title}", type=first.rule)
                tests += 1
                failures += 1
            healthy = conversation_total(result) - len(failing)
            if healthy or not failing:
                tests += 1
                noun = f"{healthy} conversation{'s' if healthy != 1 else ''}"
                name = (
                    f"{noun} (--fail-on never)"
                    if opts.fail_on == "never"
                    else f"{noun} without findings at or above {opts.fail_on}"
                )
                _el(suite, "testcase", classname=classname, name=name, time="0")
            if result.warnings:
                _el(
                    suite,
                    "system-out",
                    "\n".join(
                        f"capture warning {w.code}"
                        + (f" (frame {w.frame})" if w.frame is not None else "")
                        + f": {w.message}"
                        for w in result.warnings
                    ),
                )
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", "0")
        total_tests += tests
        total_failures += failures
        total_errors += errors
    root.set("time", f"{sum(float(suite.get('time', '0')) for suite in root):.6f}")
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", str(total_errors))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
