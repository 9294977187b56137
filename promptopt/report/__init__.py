"""Leaderboard rendering: pure functions from results to Markdown, HTML, JSON and CSV text, and the paired
statistics behind them (``stats``).

May import: ``promptopt.errors`` and the standard library. Never the engine (no torch), the run pipeline, a suite
or a plugin: reports render what runs wrote.

    from promptopt.report import build_leaderboard, render
    board = build_leaderboard(entries, title="SST-2", meta={"command": "..."})
    text = render(board, "md")

Reading run directories into entries is :func:`promptopt.suite.leaderboard.collect_runs`.
"""

from __future__ import annotations

import enum

from promptopt.errors import enum_value
from promptopt.report.findings import render_findings
from promptopt.report.html import render_html
from promptopt.report.markdown import render_markdown
from promptopt.report.model import REPORT_SCHEMA, REPORT_SCHEMA_VERSION, Leaderboard, Row, RunEntry, build_leaderboard
from promptopt.report.tables import load_json, render_csv, render_json


class ReportFormat(str, enum.Enum):
    MD = "md"
    HTML = "html"
    JSON = "json"
    CSV = "csv"
    FINDINGS = "findings"  # Markdown: plain sentences computed from the rows (promptopt.report.findings)


_RENDERERS = {ReportFormat.MD: render_markdown, ReportFormat.HTML: render_html, ReportFormat.JSON: render_json,
              ReportFormat.CSV: render_csv, ReportFormat.FINDINGS: render_findings}  # fmt: skip


def render(board: Leaderboard, fmt: str | ReportFormat) -> str:
    """The leaderboard in one format: ``md``, ``html``, ``json``, ``csv`` or ``findings``."""
    return _RENDERERS[enum_value(ReportFormat, fmt, "report format")](board)


__all__ = ["REPORT_SCHEMA", "REPORT_SCHEMA_VERSION", "Leaderboard", "ReportFormat", "Row", "RunEntry",
           "build_leaderboard", "load_json", "render", "render_csv", "render_findings", "render_html", "render_json",
           "render_markdown"]
