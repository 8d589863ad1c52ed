"""The analyst's report of one optimization: an offline HTML page of interactive charts, and the same charts as PNGs.

``build_report`` extracts plain data from a re-checked Result (and risk_models' scenario revaluation);
``write_html`` and ``write_pngs`` render it.  Plotting libraries are imported only here.
"""

from .data import ReportData, build_report
from .html import write_html
from .png import write_pngs

__all__ = ["ReportData", "build_report", "write_html", "write_pngs"]
