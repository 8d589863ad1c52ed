"""`pmopt optimize --report / --png` on the example desk: the charts' numbers are the document's and risk_models',
and the HTML page renders every chart in headless Chromium (selenium, Debian's chromium and chromium-driver) with no
console error and no network.

Under CI=true a missing browser fails the test; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.report import ReportData, build_report, capital, waterfall, write_html
from optimizer.report.charts import CHARTS
from optimizer.report.data import WALLET, collateral_by_venue
from optimizer.report.distribution import histogram
from optimizer.run import Result, optimize
from risk_models.compiled import compile_book
from risk_models.loading import LoadedBook, load_book, load_policy
from risk_models.market_data import default_prices
from risk_models.measures import RiskMeasure
from risk_models.risk_model import build_scenarios
from risk_models.scenarios import ScenarioSet
from risk_models.schema.policy import Policy

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "multi_venue"
SWEEP = [1.5, 2.0]
REL = 1e-9


@dataclasses.dataclass(frozen=True)
class Desk:
    loaded: LoadedBook
    policy: Policy
    scenarios: ScenarioSet
    result: Result
    data: ReportData

    @property
    def doc(self) -> dict:
        return self.result.document


@pytest.fixture(scope="module")
def desk() -> Desk:
    loaded = load_book(EXAMPLE / "book.yaml")
    policy = load_policy(EXAMPLE / "policy.yaml")
    scenarios = build_scenarios(policy.risk_model, compile_book(loaded).assets, default_prices(),
                                loaded.book.as_of, policy.stress_scenarios, "policy")
    result = optimize(loaded, policy, scenarios)
    return Desk(loaded, policy, scenarios, result, build_report(loaded, policy, scenarios, result, SWEEP))


def _accounts(doc: dict, side: str) -> dict[str, dict]:
    return {f"{a['venue']}/{a['account']}/cross": a for a in doc[side]["accounts"]}


# == numbers: the document's and risk_models' ======================================================================

def test_collateral_after_is_the_documents_allocations(desk: Desk) -> None:
    frame = desk.data.collateral
    after = frame[frame.state == "after"].set_index(["venue", "asset"])["value"]
    expected: dict[tuple[str, str], float] = {}
    for row in desk.doc["allocations"]:
        key = (row["bucket"].split("/")[0], row["asset"])
        expected[key] = expected.get(key, 0.0) + row["value"]
    assert after.to_dict() == pytest.approx(expected, rel=REL)
    # the recommended book, valued the same way as the before side, gives the same mix (dust aside)
    from_book = collateral_by_venue(desk.loaded, desk.result.book, "after").set_index(["venue", "asset"])["value"]
    for key, value in expected.items():
        assert from_book[key] == pytest.approx(value, rel=1e-6, abs=1e-6 * desk.doc["after"]["locked"])
    # no loans in the example: posted + wallet = the document's locked + free, before and after
    for side in ("before", "after"):
        part = frame[frame.state == side]
        assert (part.value >= 0).all()
        assert part.value.sum() == pytest.approx(desk.doc[side]["locked"] + desk.doc[side]["free"], rel=REL)
        assert part[part.venue == WALLET].value.sum() == pytest.approx(desk.doc[side]["free"], rel=REL)


def test_waterfall_steps_are_the_documents_margins(desk: Desk) -> None:
    before, after = _accounts(desk.doc, "before"), _accounts(desk.doc, "after")
    assert [p.label for p in desk.data.waterfalls] == list(after)
    for pool in desk.data.waterfalls:
        a = after[pool.label]
        assert pool.venue_mm == a["maintenance_margin"]
        assert pool.requirement == a["net_portfolio_margin"]
        assert pool.equity == a["equity"]
        assert pool.equity_before == before[pool.label]["equity"]
        # k = 1 needs less than k = 1.5 (MM_s >= 0); the steps add up to the requirement, then to the equity
        assert 0 < pool.net_portfolio_margin <= pool.requirement
        assert sum(waterfall.deltas(pool)[:3]) == pytest.approx(pool.requirement, rel=REL)
        assert pool.requirement + pool.headroom == pytest.approx(pool.equity, rel=REL)
        assert pool.headroom >= -1e-6 * desk.doc["after"]["locked"]  # the policy holds after
    # binance/main and hyperliquid/vault bind: no headroom left; the plotted bars are the steps
    assert desk.data.waterfalls[0].headroom == pytest.approx(0.0, abs=1e-3)
    fig = waterfall.figure(desk.data)
    bars = [t for t in fig.data if t.type == "waterfall"]
    for trace, pool in zip(bars, desk.data.waterfalls, strict=True):
        assert list(trace.y) == waterfall.deltas(pool)


def test_scenario_needs_give_the_documents_requirement(desk: Desk) -> None:
    """ES99 of the plotted needs is the net portfolio margin of the document, before and after."""
    measure = RiskMeasure("es", desk.policy.risk_model.confidence)
    p = desk.scenarios.probabilities
    before, after = _accounts(desk.doc, "before"), _accounts(desk.doc, "after")
    assert len(desk.data.distributions) == 5
    for pool in desk.data.distributions:
        assert pool.after.needs.shape == (desk.scenarios.n_scenarios,)
        assert measure.evaluate(pool.after.needs, p) == pytest.approx(after[pool.label]["net_portfolio_margin"],
                                                                       rel=1e-9)
        assert measure.evaluate(pool.before.needs, p) == pytest.approx(before[pool.label]["net_portfolio_margin"],
                                                                        rel=1e-9)
        assert pool.after.requirement == pytest.approx(after[pool.label]["net_portfolio_margin"], rel=REL)
        assert pool.after.equity == pytest.approx(after[pool.label]["equity"], rel=REL)
        assert pool.after.stressed_equity == pytest.approx(after[pool.label]["stressed_equity"], rel=REL)
        edges, share_before, share_after = histogram(pool)
        assert share_before.sum() == pytest.approx(1.0) and share_after.sum() == pytest.approx(1.0)
        assert edges[0] <= pool.after.needs.min() and edges[-1] >= pool.after.needs.max()
        # worst scenarios: dated, sorted by loss, each at its own need
        labels = set(desk.scenarios.labels)
        losses = [w.loss for w in pool.after.worst]
        assert len(losses) == 5 and losses == sorted(losses, reverse=True)
        for w in pool.after.worst:
            assert w.label in labels and re.fullmatch(r"\d{4}-\d{2}-\d{2}", w.label)
            assert w.need == pool.after.needs[desk.scenarios.labels.index(w.label)]


def test_liquidation_distances_come_from_the_documents_prices(desk: Desk) -> None:
    frame = desk.data.liquidation.set_index("position")
    assert len(frame) == 15
    for side in ("before", "after"):
        for a in desk.doc[side]["accounts"]:
            for symbol, liq in a["liquidation_prices"].items():
                row = frame.loc[f"{a['venue']}/{a['account']} {symbol}"]
                if liq is None:
                    assert math.isnan(row[f"distance_{side}"])
                else:
                    assert row[f"distance_{side}"] == pytest.approx(abs(row.mark - liq) / row.mark, rel=REL)
    # the isolated DOGE and LINK longs sit at the policy's 25 % after (6.6 % and 6.8 % before)
    for name in ("binance/main DOGEUSDT", "binance/main LINKUSDT"):
        assert frame.loc[name, "distance_before"] < 0.07
        assert frame.loc[name, "distance_after"] == pytest.approx(desk.policy.isolated.liquidation_distance, abs=1e-6)
    btc = frame.loc["hyperliquid/vault BTC"]
    assert (btc.mode_before, btc.mode_after) == ("isolated", "cross")


def test_sweep_point_at_the_policy_buffer_is_the_recommendation(desk: Desk) -> None:
    rows = {r["value"]: r for r in desk.data.sweep}
    assert list(rows) == SWEEP and all(r["status"] == "optimal" for r in rows.values())
    here = rows[desk.policy.cross.buffer]
    assert here["objective_value"] == pytest.approx(desk.doc["objective_value"], rel=1e-6)
    assert here["locked"] == pytest.approx(desk.doc["after"]["locked"], rel=1e-6)
    assert rows[2.0]["objective_value"] > here["objective_value"]  # a larger buffer costs more carry
    fig = capital.figure(desk.data)
    assert list(fig.data[0].y) == [rows[k]["locked"] for k in SWEEP] and capital.note(desk.data) is None


def test_infeasible_sweep_points_become_a_note(desk: Desk) -> None:
    feasible = desk.data.sweep[0]
    infeasible = {"value": 50.0, "status": "infeasible", "objective_value": None, "locked": None, "free": None,
                  "top_up": 1234567.8}
    mixed = dataclasses.replace(desk.data, sweep=[feasible, infeasible])
    assert "k = 50: infeasible, the smallest top-up is 1,234,568 USD" in capital.note(mixed)
    assert list(capital.figure(mixed).data[0].x) == [feasible["value"]]
    none = dataclasses.replace(desk.data, sweep=[infeasible])
    assert capital.figure(none) is None and capital.draw(none) is None and "top-up" in capital.note(none)
    assert "--report-sweep none" in capital.note(dataclasses.replace(desk.data, sweep=[]))


# == files: HTML (offline) and PNGs =================================================================================

def test_html_is_self_contained(desk: Desk, tmp_path: Path) -> None:
    text = write_html(desk.data, tmp_path / "r.html").read_text(encoding="utf-8")
    assert text.count('class="plotly-graph-div"') == len(CHARTS)
    assert not re.search(r"<script[^>]+src=", text) and "<link" not in text  # no CDN, nothing fetched
    assert "binance/main/isolated/DOGEUSDT" in text and "Binding constraints" in text
    for b in desk.doc["binding_constraints"]:
        assert escape(b["explanation"][1:]) in text  # in words


def test_cli_writes_report_and_pngs(tmp_path: Path) -> None:
    html, pngs = tmp_path / "report.html", tmp_path / "png"
    result = CliRunner().invoke(main, ["optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                                       "--quiet", "--report", str(html), "--png", str(pngs), "--report-sweep", "1.5"])
    assert result.exit_code == 0, result.output
    assert html.stat().st_size > 1_000_000  # plotly.js inline
    assert sorted(p.name for p in pngs.iterdir()) == sorted(f"{m.NAME}.png" for m in CHARTS)
    for path in pngs.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    bad = CliRunner().invoke(main, ["optimize", str(EXAMPLE / "book.yaml"), "--policy", str(EXAMPLE / "policy.yaml"),
                                    "--report", str(html), "--report-sweep", "1,x"])
    assert bad.exit_code == 2 and "--report-sweep" in bad.output


def test_no_sweep_leaves_a_note_and_no_chart(desk: Desk, tmp_path: Path) -> None:
    text = write_html(dataclasses.replace(desk.data, sweep=[]), tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No buffer sweep was asked for" in text and 'id="chart-capital_vs_buffer"' not in text
    assert text.count('class="plotly-graph-div"') == len(CHARTS) - 1


# == the page in headless Chromium ==================================================================================

def _browser() -> WebDriver:
    """Headless Chromium through chromedriver, both from Debian; no download of anything."""
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (the test extra)")
    if missing:
        reason = (f"{', '.join(missing)} not installed: apt-get install chromium chromium-driver "
                  "(make test does this)")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_report_renders_in_chromium(desk: Desk, tmp_path: Path) -> None:
    path = write_html(desk.data, tmp_path / "report.html")
    driver = _browser()
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(path.resolve().as_uri())
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") > 0)
        plots = driver.execute_script(
            "return [...document.querySelectorAll('.js-plotly-plot')].map(p => [p.id, "
            "p.querySelectorAll('.main-svg').length, p.querySelectorAll('g.trace').length])")
        assert [p[0] for p in plots] == [f"chart-{m.NAME}" for m in CHARTS]
        for name, svgs, traces in plots:
            assert svgs >= 2 and traces > 0, name  # drawn, not an empty frame
        # the drawn waterfall is the document's: read the figure data back from plotly in the page
        levels = driver.execute_script(
            "return document.getElementById('chart-margin_waterfall').data"
            ".filter(t => t.type === 'waterfall').map(t => t.y)")
        assert levels == [pytest.approx(waterfall.deltas(p), rel=1e-12) for p in desk.data.waterfalls]
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, height)
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 100_000
    finally:
        driver.quit()


def test_sweep_rows_match_pmopt_sweep_keys(desk: Desk) -> None:
    assert all(set(r) == {"value", "status", "objective_value", "locked", "free", "top_up"} for r in desk.data.sweep)
    assert np.isfinite([r["locked"] for r in desk.data.sweep]).all()
