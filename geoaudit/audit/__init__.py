"""``geoaudit audit``: one command for a content creator's own page against its competitors.

Library use (the CLI calls exactly this)::

    from geoaudit.config import load_settings
    from geoaudit.audit import AuditOptions, audit, plan_audit

    settings = load_settings()
    plan = plan_audit("https://example.com/kettles", ["how fast does a kettle boil?"],
                      ["https://rival.example/kettles", "drafts/rival.html"], settings=settings)
    print("\\n".join(plan.lines()))            # what --dry-run prints: calls, tokens, cost; no model call
    result = audit("https://example.com/kettles", ["how fast does a kettle boil?"],
                   ["https://rival.example/kettles"], settings=settings, options=AuditOptions(budget="quick"))
    result.report, result.recommendation, result.competition, result.stats, result.check

The steps (issue 15):

1. **Fetch** your page and the competitors (URLs are crawled politely, local files loaded), and run
   the static AI-readiness checks (:mod:`geoaudit.check`) on your page.
2. **Bench:** one item per query, your page among the competitors; the engine's BM25 retriever picks
   and orders the sources, so a rewrite that changes retrieval counts, and your page's retrieval
   rank is recorded.
3. **Simulate** the strategies (default: the ones that work on the chosen model: the controls
   identity and rank and the deterministic rewrites on the embedded model, plus grounded LLM rewrites
   elsewhere) at adopter rates 0, 0.5 and 1, with seeds and samples sized by the budget. The audit
   is a run in the run store: the same command resumes it. :func:`plan_audit` (``--dry-run``) prints
   the planned calls, tokens and cost and stops before any model call.
4. **Report** (:mod:`geoaudit.audit.render`): readiness findings, the engine's calibration, each
   strategy's verdict with its uncertainty and how it changes as competitors adopt, the recommended
   rewrite ready to copy (full text, diff, fabrication flags, the queries it helped and hurt), and
   the competitor pages that take the engine's attention, per query.

Bad URLs, unreachable competitors and pages that extract to nothing are skipped with their reason
and listed in the report; when your own page cannot be used, the report still shows the readiness
findings and says why nothing was simulated.
"""

from __future__ import annotations

from geoaudit.audit.inputs import read_competitors_file
from geoaudit.audit.model import (
    AuditInput,
    AuditPlan,
    AuditResult,
    QueryCompetition,
    QueryEffect,
    Recommendation,
    RewriteText,
    SourceShare,
)
from geoaudit.audit.plan import plan_audit
from geoaudit.audit.render import render_audit_html, write_audit_report
from geoaudit.audit.runner import audit
from geoaudit.options import AuditOptions

__all__ = [
    "AuditInput",
    "AuditOptions",
    "AuditPlan",
    "AuditResult",
    "QueryCompetition",
    "QueryEffect",
    "Recommendation",
    "RewriteText",
    "SourceShare",
    "audit",
    "plan_audit",
    "read_competitors_file",
    "render_audit_html",
    "write_audit_report",
]
