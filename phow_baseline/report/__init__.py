"""Stage 8, report: the self-contained static HTML report and dashboard."""

from .html import render_report, write_report

__all__ = ["render_report", "write_report"]
