"""Deribit-style risk matrix (margin_model: risk_matrix) used as a venue's maintenance and initial margin."""

from __future__ import annotations

import pytest

from tests.conftest import Books, rules_dict

MODEL = {"kind": "risk_matrix", "price_range": 0.16, "buckets_count": 4, "min_annualised_move": 0.01,
         "mm_factor": 0.8, "per_underlying": {"ETH": {"price_range": 0.18, "min_annualised_move": 0.005,
                                                       "pnl_offset": 0.6}}}


def _inverse(und: str, size: float) -> dict:
    return {"underlying": und, "settle": und, "kind": "inverse", "contract_size": size,
            "brackets": [{"cap": None, "mmr": 0.015, "max_leverage": 50}]}


RULES = rules_dict({"BTC-PERPETUAL": _inverse("BTC", 10), "BTC-27DEC24": _inverse("BTC", 10),
                    "ETH-PERPETUAL": _inverse("ETH", 1)}, margin_model=MODEL)


def _book(positions: list, collateral: dict, prices: dict) -> dict:
    return {"version": 1, "prices": prices,
            "venues": {"deribit": {"rules": "r.yaml", "accounts": {"pm": {"collateral": collateral,
                                                                          "positions": positions}}}}}


def test_long_perpetual_margin_by_hand(books: Books) -> None:
    # 10 BTC long at 50,000: worst move −16 % loses 10 × 0.16 / 0.84 BTC; roll shock 10 × 1 %; MM = 0.8 × IM
    p = 50_000.0
    report = books.report(_book([{"symbol": "BTC-PERPETUAL", "qty": 10 * p / 10, "entry_price": p}],
                                {"BTC": 5}, {"BTC": p}), {"r.yaml": RULES})
    im = 10 * 0.16 / 0.84 + 10 * 0.01
    acct = report.accounts[0]
    assert acct.initial_margin == pytest.approx(im * p, rel=1e-12)
    assert acct.maintenance_margin == pytest.approx(0.8 * im * p, rel=1e-12)
    assert acct.positions[0].maintenance_margin_settle == pytest.approx(0.8 * im, rel=1e-12)


def test_short_uses_the_up_move_and_per_underlying_parameters(books: Books) -> None:
    # ETH short 20 ETH at 2,000: worst move +18 % loses 20 × 0.18 / 1.18 ETH; roll 20 × 0.5 %
    p = 2_000.0
    report = books.report(_book([{"symbol": "ETH-PERPETUAL", "qty": -20 * p, "entry_price": p}],
                                {"ETH": 10}, {"ETH": p}), {"r.yaml": RULES})
    im = 20 * 0.18 / 1.18 + 20 * 0.005
    assert report.accounts[0].initial_margin == pytest.approx(im * p, rel=1e-12)


def test_calendar_spread_nets_to_zero_delta(books: Books) -> None:
    # long perpetual, short future of the same USD face at the same mark: net delta 0 → no margin
    p = 40_000.0
    positions = [{"symbol": "BTC-PERPETUAL", "qty": 100_000, "entry_price": p},
                 {"symbol": "BTC-27DEC24", "qty": -100_000, "entry_price": p}]
    report = books.report(_book(positions, {"BTC": 1}, {"BTC": p}), {"r.yaml": RULES})
    acct = report.accounts[0]
    assert acct.maintenance_margin == pytest.approx(0.0, abs=1e-9)
    assert acct.positions[0].maintenance_margin > 0  # each leg alone needs margin
    assert acct.margin_ratio is None


def test_liquidation_price_with_coin_collateral(books: Books) -> None:
    # USD margin of an inverse position is constant in the price, so with C BTC of collateral:
    # P·r·(C + q·cs/e) − P·q·cs/m = MM_usd  ⇒  r* = (MM_usd + P·q·cs/m) / (P·(C + q·cs/e))
    p, q, cs, e, c = 50_000.0, 20_000.0, 10.0, 52_000.0, 0.3
    report = books.report(_book([{"symbol": "BTC-PERPETUAL", "qty": q, "entry_price": e}], {"BTC": c}, {"BTC": p}),
                          {"r.yaml": RULES})
    delta = q * cs / p
    mm_usd = 0.8 * (delta * 0.16 / 0.84 + delta * 0.01) * p
    ratio = (mm_usd + p * q * cs / p) / (p * (c + q * cs / e))
    assert report.accounts[0].positions[0].liquidation_price == pytest.approx(p * ratio, rel=1e-10)


def test_linear_contract_on_matrix_venue_is_bad_input(books: Books) -> None:
    from risk_models.errors import InputErrors

    rules = rules_dict({"BTCUSDC": {"underlying": "BTC", "settle": "USDC", "kind": "linear", "contract_size": 1,
                                    "brackets": [{"cap": None, "mmr": 0.01, "max_leverage": 50}]}},
                       margin_model=MODEL)
    with pytest.raises(InputErrors, match="inverse contracts only"):
        books.load(_book([{"symbol": "BTCUSDC", "qty": 1, "entry_price": 1}], {"USDC": 1}, {"BTC": 1, "USDC": 1}),
                   {"r.yaml": rules})
