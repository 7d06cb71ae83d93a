"""Renderers for a :class:`~geoaudit.check.model.CheckReport`: table rows, JSON, SARIF 2.1.0, JUnit XML, HTML.

They only read the report; no check logic lives here. Everything from a page (titles, headers,
robots.txt lines) is untrusted text: it is escaped for HTML and XML, and control characters that
XML 1.0 cannot carry are dropped.
"""

from __future__ import annotations

import html as _html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from geoaudit.check.model import ROLE_LABELS, SEVERITIES, CheckReport, Finding, PageCheck, SiteCheck, severity_at_least
from geoaudit.check.rules import RULES

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/geoaudit/geoaudit"
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Row:
    """One line of the terminal table: where, how bad, which rule, what was seen."""

    scope: str
    severity: str
    rule: str
    message: str
    evidence: str


def summary_rows(report: CheckReport, *, include_pass: bool = True) -> list[Row]:
    """Rows for a table, site findings then page findings, most severe first within each target."""
    rows: list[Row] = []
    order = {s: i for i, s in enumerate(SEVERITIES)}

    def add(scope: str, findings: tuple[Finding, ...]) -> None:
        for f in sorted(findings, key=lambda f: order[f.severity]):
            if include_pass or f.severity != "pass":
                rows.append(Row(scope, f.severity, f.id, f.message, f.evidence))

    for site in report.sites:
        add(f"site {site.origin}", site.findings)
    for page in report.pages:
        add(page.target, page.findings)
    return rows


def render_json(report: CheckReport) -> str:
    """The whole report as JSON (``"format": "geoaudit.check/1"``)."""
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------------
# SARIF 2.1.0
# ------------------------------------------------------------------------------------------------

# SARIF: a result that is not a failure has level "none" (3.27.9/3.27.10).
_SARIF_KIND = {
    "error": ("fail", "error"),
    "warning": ("fail", "warning"),
    "info": ("informational", "none"),
    "pass": ("pass", "none"),
}


def to_sarif(report: CheckReport) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log: one run, one result per finding, rules for every id used."""
    findings = report.findings
    used = list(dict.fromkeys(f.id for f in findings))
    rules = []
    for rule_id in used:
        rule = RULES[rule_id]
        entry: dict[str, Any] = {"id": rule.id, "shortDescription": {"text": rule.title}}
        if rule.help:
            entry["help"] = {"text": rule.help}
        if rule.help_uri:
            entry["helpUri"] = rule.help_uri
        rules.append(entry)
    index = {rule_id: i for i, rule_id in enumerate(used)}
    results = []
    for f in findings:
        kind, level = _SARIF_KIND[f.severity]
        text = f.message + (f" Evidence: {f.evidence}" if f.evidence else "")
        result: dict[str, Any] = {
            "ruleId": f.id,
            "ruleIndex": index[f.id],
            "kind": kind,
            "level": level,
            "message": {"text": text},
            "properties": {"severity": f.severity, "title": f.title},
        }
        if f.url:
            result["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": f.url}}}]
        results.append(result)
    notifications = [
        {"level": "note", "message": {"text": f"{p.target}: {s.check} skipped: {s.reason}"}}
        for p in report.pages
        for s in p.skipped
    ]
    notifications += [{"level": "warning", "message": {"text": w}} for w in report.warnings]
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "geoaudit check",
                        "version": report.geoaudit_version,
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "agentsSource": report.agents_source,
                    "schemaSource": report.schema_source,
                    "generatedAt": report.generated_at,
                },
            }
        ],
    }


def render_sarif(report: CheckReport) -> str:
    return json.dumps(to_sarif(report), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------------
# JUnit XML
# ------------------------------------------------------------------------------------------------


def _x(text: str) -> str:
    return _XML_BAD.sub("", text)


def render_junit(report: CheckReport, *, fail_on: str = "warning") -> str:
    """JUnit XML: a testsuite per site and per page, a testcase per finding.

    Findings at ``fail_on`` or worse are ``<failure>``s (type = severity); the others pass (their
    message in ``<system-out>``); skipped checks are ``<skipped>`` testcases.
    """
    root = ET.Element("testsuites", name="geoaudit check")
    totals = {"tests": 0, "failures": 0, "skipped": 0}

    def suite(name: str, findings: tuple[Finding, ...], skipped: list[tuple[str, str]]) -> None:
        el = ET.SubElement(root, "testsuite", name=_x(name), timestamp=report.generated_at)
        failures = 0
        for f in findings:
            case = ET.SubElement(el, "testcase", classname=f"geoaudit.check.{f.check}", name=_x(f"{f.id}: {f.title}"))
            body = (
                f.message
                + (f"\nEvidence: {f.evidence}" if f.evidence else "")
                + (f"\nURL: {f.url}" if f.url else "")
                + (f"\nHelp: {f.help}" if f.help else "")
            )
            if severity_at_least(f.severity, fail_on):
                failures += 1
                fail = ET.SubElement(case, "failure", type=f.severity, message=_x(f.message))
                fail.text = _x(body)
            else:
                out = ET.SubElement(case, "system-out")
                out.text = _x(f"[{f.severity}] {body}")
        for check, reason in skipped:
            case = ET.SubElement(el, "testcase", classname=f"geoaudit.check.{check}", name=_x(f"{check}: skipped"))
            ET.SubElement(case, "skipped", message=_x(reason))
        counts = {"tests": len(findings) + len(skipped), "failures": failures, "skipped": len(skipped)}
        el.set("tests", str(counts["tests"]))
        el.set("failures", str(failures))
        el.set("errors", "0")
        el.set("skipped", str(counts["skipped"]))
        for k in totals:
            totals[k] += counts[k]

    for site in report.sites:
        suite(f"site {site.origin}", site.findings, [(s.check, s.reason) for s in site.skipped])
    for page in report.pages:
        suite(page.target, page.findings, [(s.check, s.reason) for s in page.skipped])
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

SEVERITY_CSS = """
.sev { white-space: nowrap; display: inline-block; min-width: 5.2em; text-align: center; border-radius: 3px; padding: 0 6px; font-size: 0.85em; font-weight: 600; }
.sev-error { background: #fbe3e3; color: #a11; } .sev-warning { background: #fff1dc; color: #8a4b00; }
.sev-info { background: #e8f0fb; color: #1d4f91; } .sev-pass { background: #e3f5e3; color: #08660f; }
"""

_CSS = (
    SEVERITY_CSS
    + """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b; background: #fff;
       max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.7em; margin: 0 0 4px; } h2 { margin-top: 2em; border-bottom: 2px solid #ddd; padding-bottom: 4px; overflow-wrap: anywhere; }
h3 { margin-top: 1.4em; } .sub, .note { color: #555; } .note { font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; width: 100%; }
th, td { border: 1px solid #d6d6d6; padding: 3px 7px; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
th { background: #f3f3f3; }
td:first-child { width: 1%; white-space: nowrap; }
.ev { color: #555; font-size: 0.88em; } code { font-size: 0.92em; }
.counts span { margin-right: 1em; }
.warn { border-left: 5px solid #c60; background: #fff6ec; padding: 8px 12px; margin: 1em 0; }
details { margin: 0.4em 0 1em; } summary { cursor: pointer; color: #333; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
"""
)


def _e(value: object) -> str:
    return _html.escape("" if value is None else str(value), quote=True)


def _badge(severity: str) -> str:
    return f'<span class="sev sev-{_e(severity)}">{_e(severity)}</span>'


def _counts(findings: list[Finding] | tuple[Finding, ...]) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    return '<p class="counts">' + "".join(f"<span>{_badge(s)} {counts[s]}</span>" for s in SEVERITIES) + "</p>"


def _findings_table(findings: tuple[Finding, ...]) -> str:
    order = {s: i for i, s in enumerate(SEVERITIES)}
    rows = []
    for f in sorted(findings, key=lambda f: order[f.severity]):
        evidence = f'<div class="ev">Evidence: {_e(f.evidence)}</div>' if f.evidence else ""
        helptext = f'<div class="ev">{_e(f.help)}</div>' if f.help and f.severity != "pass" else ""
        rows.append(
            f"<tr><td>{_badge(f.severity)}</td><td><code>{_e(f.id)}</code><br>{_e(f.title)}</td>"
            f"<td>{_e(f.message)}{evidence}{helptext}</td></tr>"
        )
    if not rows:
        return '<p class="note">No findings.</p>'
    return (
        "<table><thead><tr><th>severity</th><th>check</th><th>finding</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _agents_table(page: PageCheck) -> str:
    if not page.agents:
        return ""
    rows = []
    for role in ("search", "user", "training"):
        for a in (r for r in page.agents if r.role == role):
            robots_sev = (
                "pass"
                if a.robots == "allowed"
                else ("info" if a.robots == "unknown" else ("info" if role == "training" else "error"))
            )
            fetch_sev = {"same": "pass", "blocked": "error", "differs": "warning", "rate-limited": "warning"}.get(
                a.fetch, "info"
            )
            rows.append(
                f"<tr><td>{_e(a.token)}</td><td>{_e(a.operator)}</td><td>{_e(ROLE_LABELS[a.role])}</td>"
                f'<td><span class="sev sev-{robots_sev}">{_e(a.robots)}</span><div class="ev">{_e(a.robots_rule)}</div></td>'
                f'<td><span class="sev sev-{fetch_sev}">{_e(a.fetch)}</span></td><td class="num">{_e(a.status if a.status is not None else "")}</td>'
                f'<td class="ev">{_e(a.note)}</td></tr>'
            )
    return (
        "<h3>AI agents</h3><table><thead><tr><th>agent</th><th>operator</th><th>role</th><th>robots.txt</th>"
        "<th>fetched as it</th><th>status</th><th>note</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _facts(page: PageCheck) -> str:
    f = page.facts
    parts = []
    if f is not None:
        items = [
            ("final URL", f.final_url),
            ("status", f.status),
            ("title", f.title),
            ("description", f.description),
            ("canonical", f.canonical),
            ("language", f.lang),
            ("last modified", f"{f.last_modified} ({f.last_modified_source})" if f.last_modified else ""),
            (
                "main text",
                f"{f.words:,} words, {f.text_chars:,} characters, {f.text_share:.1%} of {f.html_chars:,} characters of HTML ({f.extractor})",
            ),
        ]
        parts.append(
            "<h3>What an extractor sees</h3><table><tbody>"
            + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
            + "</tbody></table>"
        )
        if f.headings:
            outline = "".join(
                f'<li style="margin-left:{(level - 1) * 1.2:.1f}em">H{level} {_e(text)}</li>'
                for level, text in f.headings[:80]
            )
            parts.append(
                f"<details><summary>Headings outline ({len(f.headings)})</summary><ul>{outline}</ul></details>"
            )
    s = page.structured
    if s is not None:
        per = ", ".join(f"{k}: {v}" for k, v in s.items.items())
        og = ", ".join(f"{k}={v}" for k, v in s.opengraph.items())
        parts.append(
            f'<p class="note">Structured data — {_e(per)}; types: {_e(", ".join(s.types) or "none")}'
            + (f"; OpenGraph: {_e(og)}" if og else "")
            + "</p>"
        )
    if page.skipped:
        parts.append(
            "<h3>Skipped checks</h3><ul>"
            + "".join(f"<li><code>{_e(k.check)}</code>: {_e(k.reason)}</li>" for k in page.skipped)
            + "</ul>"
        )
    return "".join(parts)


def _site_section(site: SiteCheck) -> str:
    skipped = "".join(f"<li><code>{_e(k.check)}</code>: {_e(k.reason)}</li>" for k in site.skipped)
    return (
        f"<section><h2>Site {_e(site.origin)}</h2>"
        f'<p class="note">robots.txt: {_e(site.robots_state)} (HTTP {_e(site.robots_status)}) · llms.txt: HTTP {_e(site.llms_status)}</p>'
        + _counts(site.findings)
        + _findings_table(site.findings)
        + (f"<h3>Skipped checks</h3><ul>{skipped}</ul>" if skipped else "")
        + "</section>"
    )


def _page_section(page: PageCheck) -> str:
    state = "" if page.checked else ' <span class="sev sev-error">not checked</span>'
    kind = "local file" if page.kind == "file" else "URL"
    return (
        f'<section><h2>{_e(page.target)}{state}</h2><p class="sub">{_e(kind)} · {_e(page.url)}</p>'
        + _counts(page.findings)
        + _findings_table(page.findings)
        + _agents_table(page)
        + _facts(page)
        + "</section>"
    )


def html_sections(report: CheckReport) -> str:
    """The report's site and page sections as an HTML fragment (for a report that embeds the checks,
    e.g. ``geoaudit audit``'s); style it with :data:`SEVERITY_CSS`."""
    return "".join(_site_section(s) for s in report.sites) + "".join(_page_section(p) for p in report.pages)


def render_html(report: CheckReport) -> str:
    """A self-contained HTML page (no scripts, no external resources; a strict CSP)."""
    findings = report.findings
    warnings = "".join(f'<div class="warn">{_e(w)}</div>' for w in report.warnings)
    o = report.options
    method = (
        f"Checked {len(report.pages)} target(s) on {len(report.sites)} site(s) with {o.get('requests', '?')} HTTP request(s), "
        f"at least {o.get('delay', '?')} s apart per host, as {o.get('user_agent', '')} (robots.txt honoured"
        f"{' — IGNORED' if o.get('respect_robots') is False else ''}) and, for comparison, as a browser and as each AI agent. "
        f"AI agents: {report.agents_source}. Structured-data properties: {report.schema_source}. "
        "Severities: error = AI engines cannot use the page as intended; warning = likely to hurt; info = worth knowing; pass = checked and fine."
    )
    body = (
        "<header><h1>AI-readiness check</h1>"
        f'<p class="sub">geoaudit {_e(report.geoaudit_version)} · {_e(report.generated_at)}</p>'
        + _counts(findings)
        + warnings
        + "</header>"
        + html_sections(report)
        + f'<footer><h2>How this was checked</h2><p class="note">{method}</p>'
        '<p class="note">Page text above is quoted as data; nothing in it was executed.</p></footer>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>AI-readiness check — geoaudit</title>\n<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
