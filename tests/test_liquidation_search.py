"""The liquidation search itself: compaction of finished groups and the fine grid for buckets under water."""

from __future__ import annotations

import numpy as np
import pytest

from risk_models import liquidation
from risk_models.compiled import compile_book
from risk_models.venue_margin import evaluate, uni_mmr
from tests.conftest import Books, linear, rules_dict

BRACKETS = [{"cap": 50_000, "mmr": 0.004, "max_leverage": 125}, {"cap": 250_000, "mmr": 0.005, "max_leverage": 100},
            {"cap": None, "mmr": 0.01, "max_leverage": 50}]


def _many_groups_book(books: Books, n: int, seed: int = 3) -> tuple:
    """n linear contracts on n underlyings in one pool, some isolated, one isolated bucket under water."""
    rng = np.random.default_rng(seed)
    contracts = {f"C{i}USDT": linear(f"C{i}", BRACKETS) for i in range(n)}
    prices = {f"C{i}": float(np.exp(rng.uniform(0, 8))) for i in range(n)} | {"USDT": 1.0}
    positions = []
    for i in range(n):
        qty = float(rng.choice([-1, 1]) * rng.uniform(1e3, 2e5) / prices[f"C{i}"])
        pos = {"symbol": f"C{i}USDT", "qty": qty, "entry_price": prices[f"C{i}"] * float(rng.uniform(0.9, 1.1))}
        if i % 5 == 0:
            margin = 0.0 if i == 0 else abs(qty) * prices[f"C{i}"] * 0.1
            pos.update(margin_mode="isolated", isolated_margin=margin)
        positions.append(pos)
    account = {"collateral": {"USDT": 2e6}, "positions": positions}
    book = {"version": 1, "prices": prices, "venues": {"v": {"rules": "r.yaml", "accounts": {"a": account}}}}
    cb = compile_book(books.load(book, {"r.yaml": rules_dict(contracts)}))
    return cb, evaluate(cb)


def test_compacted_refinement_equals_full_refinement(books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    cb, st = _many_groups_book(books, 200)
    compacted = liquidation.liquidation_prices(cb, st)
    monkeypatch.setattr(liquidation, "_COMPACT_MIN", 10**9)
    full = liquidation.liquidation_prices(cb, st)
    np.testing.assert_array_equal(np.isnan(compacted), np.isnan(full))
    ok = ~np.isnan(full)
    np.testing.assert_allclose(compacted[ok], full[ok], rtol=1e-12)
    assert ok.sum() > 50  # the test exercises real roots


def test_roots_zero_the_surplus_in_a_large_book(books: Books) -> None:
    cb, st = _many_groups_book(books, 200)
    groups = liquidation.build_groups(cb, st)
    ratios = liquidation.liquidation_ratios(cb, st, groups)
    assert (groups.surplus0[:, 0] <= 0).any()  # one isolated bucket is under water: the fine grid is used
    found = ~np.isnan(ratios)
    g = liquidation.surplus(groups, np.where(found, ratios, 1.0)[:, None])[:, 0]
    scale = np.abs(groups.surplus0[:, 0]) + groups.mm0.sum() + 1.0
    assert np.all(np.abs(g[found]) <= 1e-9 * scale[found])


def test_uni_mmr_is_total_equity_over_total_maintenance() -> None:
    assert uni_mmr(np.array([416.02, 100.0]), np.array([199.596, 50.0])) == pytest.approx(516.02 / 249.596)
    assert np.isnan(uni_mmr(np.array([1.0]), np.array([0.0])))
