"""The report's charts as static PNG files, drawn by matplotlib (no browser needed)."""

from __future__ import annotations

from pathlib import Path

from .charts import CHARTS
from .data import ReportData

DPI = 120


def write_pngs(data: ReportData, folder: Path) -> list[Path]:
    """One PNG per chart that has data, named after the chart (e.g. collateral_mix.png); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for module in CHARTS:
        fig = module.draw(data)
        if fig is None:
            continue
        path = folder / f"{module.NAME}.png"
        fig.savefig(path, dpi=DPI)
        written.append(path)
    return written
