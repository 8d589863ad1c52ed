"""The report's chart modules, in page order.  Each has NAME, TITLE, caption(data), note(data) (text shown with or
instead of the chart, or None), figure(data) (plotly, None when there is nothing to plot) and draw(data)
(matplotlib, for the PNGs)."""

from __future__ import annotations

from . import capital, collateral, distribution, liquidation, waterfall

CHARTS = (collateral, waterfall, distribution, liquidation, capital)
