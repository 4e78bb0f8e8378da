"""The human-readable chain-of-custody report inside a bundle, as HTML and as PDF."""

from service.exports.report.html import render_report
from service.exports.report.pdf import write_pdf_report

__all__ = ["render_report", "write_pdf_report"]
