"""Books and rules from ccxt output: `pmopt import ccxt`, `pmopt rules import-ccxt`, `pmopt fetch`.

The fixtures under tests/fixtures/ccxt are ccxt's own parser output on raw venue responses (see
make_fixtures.py, which names the source of every raw response); the expected numbers below are derived by hand
from those raw responses.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import shutil
from pathlib import Path
from typing import Any

import ccxt
import pytest
from click.testing import CliRunner

from optimizer import ccxt_fetch
from optimizer.cli import main
from risk_models.ccxt_positions import AccountSource, import_ccxt
from risk_models.ccxt_rules import rules_from_tiers_file
from risk_models.ccxt_venues import profile_for
from risk_models.errors import InputErrors, PmoptError
from risk_models.loading import load_book
from risk_models.rulesets import resolve_builtin
from risk_models.yaml_io import read_yaml
from tests.conftest import dump_yaml

FIX = Path(__file__).resolve().parent / "fixtures" / "ccxt"
BINANCE_MAIN = FIX / "binanceusdm" / "main"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _save(data: Any, path: Path) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")  # NaN stays NaN, as json.dump writes it
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """The four fixture accounts (tests/fixtures/ccxt/accounts.yaml) imported through the command line."""
    out = tmp_path_factory.mktemp("book") / "book.yaml"
    code, _, err = _run("import", "ccxt", "--accounts", FIX / "accounts.yaml", "-o", out)
    assert code == 0, err
    return read_yaml(out), out, err


def _position(book: dict[str, Any], venue: str, account: str, symbol: str) -> dict[str, Any]:
    rows = [p for p in book["venues"][venue]["accounts"][account]["positions"] if p["symbol"] == symbol]
    assert len(rows) == 1
    return rows[0]


# --- the fixture desk -------------------------------------------------------------------------------------------


def test_binance_positions_against_the_raw_responses(imported: tuple[dict, Path, str]) -> None:
    book = imported[0]
    assert book["venues"]["binance"]["rules"] == "binance-usdm-2024-10"
    # Binance's hedge-mode example: positionAmt "30", contractSize 1 (USDⓈ-M), rule contract_size 1: 30 ADA, long
    assert _position(book, "binance", "main", "ADAUSDT") == {
        "symbol": "ADAUSDT", "qty": 30.0, "entry_price": 0.385, "mark_price": 0.4104759, "margin_mode": "cross"}
    comp = _position(book, "binance", "main", "COMPUSDT")  # positionAmt "-1.000", positionSide SHORT: a short
    assert comp == {"symbol": "COMPUSDT", "qty": -1.0, "entry_price": 70.92841, "mark_price": 49.72023376,
                    "margin_mode": "cross"}
    eth = _position(book, "binance", "sub", "ETHUSDT")
    # isolatedMargin 3.5555 includes the uPnL 0.143; the isolated wallet is 3.4125 (the raw isolatedWallet)
    assert eth == {"symbol": "ETHUSDT", "qty": -0.01, "entry_price": 3412.5, "mark_price": 3398.2,
                   "margin_mode": "isolated", "isolated_margin": 3.4125}


def test_collateral_is_the_cross_wallet_not_ccxts_total(imported: tuple[dict, Path, str]) -> None:
    book = imported[0]
    # Binance: crossWalletBalance per asset (ccxt's free USDC is 126.72469206, its total the margin balance)
    assert book["venues"]["binance"]["accounts"]["main"]["collateral"] == {"USDT": 23.72469206,
                                                                           "USDC": 103.12345678}
    assert book["venues"]["binance"]["accounts"]["sub"]["collateral"] == {"USDT": 72.72317863}
    # OKX: cashBal 4850.435693622894 (ccxt's total is the equity eq = 4992.890093622894)
    okx = book["venues"]["okx"]["accounts"]["pm"]
    assert okx["collateral"] == {"USDT": 4850.435693622894}
    assert _load(FIX / "okx" / "balance.json")["total"]["USDT"] == pytest.approx(4992.890093622894)
    # BingX: the info balance 194.8212 (ccxt's total is free + used = 194.8211)
    assert book["venues"]["bingx"]["accounts"]["main"]["collateral"] == {"USDT": 194.8212}
    assert _load(FIX / "bingx" / "balance.json")["total"]["USDT"] == pytest.approx(194.8211)


def test_okx_contracts_become_the_rule_sets_units(imported: tuple[dict, Path, str]) -> None:
    book = imported[0]
    # 1 contract × ctVal 0.01 BTC / okx-pm's contract_size 0.01 = 1 contract (okx-pm counts BTC-USDT-SWAP in contracts)
    assert _position(book, "okx", "pm", "BTC-USDT-SWAP") == {
        "symbol": "BTC-USDT-SWAP", "qty": 1.0, "entry_price": 34131.1, "mark_price": 4786.459271773621,
        "margin_mode": "cross", "leverage": 2.0}
    assert _position(book, "bingx", "main", "LTC-USDT")["qty"] == 0.1


def test_prices_marks_and_stablecoins(imported: tuple[dict, Path, str]) -> None:
    book, _, err = imported
    # each underlying priced by its position's mark: BTC by OKX's BTC-USDT-SWAP markPx (the only BTC position)
    assert book["prices"] == {"ADA": 0.4104759, "BTC": 4786.459271773621, "COMP": 49.72023376, "ETH": 3398.2,
                              "LTC": 73.14, "USDC": 1.0, "USDT": 1.0}
    assert "note: prices of USDC, USDT: 1.0 USD (stablecoin)" in err
    assert "isolated_margin of 1 position(s) from positionMargin" in err


def test_the_imported_book_runs_through_pmopt_margin(imported: tuple[dict, Path, str]) -> None:
    _, path, _ = imported
    code, out, err = _run("margin", path, "--json")
    assert code == 0, err
    doc = json.loads(out)
    rows = {(a["venue"], a["account"], p["symbol"]): p for a in doc["accounts"] for p in a["positions"]}
    eth = rows["binance", "sub", "ETHUSDT"]
    # Binance's own liquidation price in the raw response: (3.4125 + 0.01 × 3412.5) / (0.01 × (1 + 0.004))
    assert eth["liquidation_price"] == pytest.approx(3738.79482072, rel=1e-9)
    assert eth["isolated_margin"] == pytest.approx(3.4125)
    # 1 × 49.72023376 = 49.72023376 USDT at 1 % (COMPUSDT's first bracket, up to 5,000): 0.4972023376;
    # Binance's maintMargin in the raw response is "0.49720233" (the same, cut to 8 decimals)
    assert rows["binance", "main", "COMPUSDT"]["maintenance_margin_settle"] == pytest.approx(0.4972023376, rel=1e-12)
    # BingX: 0.1 × 73.14 = 7.314 USDT × (0.4 % + closing fee 0.05 %) = 0.032913
    assert rows["bingx", "main", "LTC-USDT"]["maintenance_margin_settle"] == pytest.approx(0.032913, rel=1e-12)


def test_single_account_with_the_exchanges_usual_rules(tmp_path: Path) -> None:
    out = tmp_path / "book.yaml"
    code, _, err = _run("import", "ccxt", "--positions", BINANCE_MAIN / "positions.json", "--balance",
                        BINANCE_MAIN / "balance.json", "--venue", "binanceusdm", "-o", out)
    assert code == 0, err
    book = read_yaml(out)
    assert book["venues"]["binanceusdm"]["rules"] == "binance-usdm"
    assert list(book["venues"]["binanceusdm"]["accounts"]) == ["main"]
    assert "rules binance-usdm-2024-10 (the built-in set for binanceusdm)" in err
    assert out.read_text().startswith("# Written by pmopt import ccxt")
    assert load_book(out).book.venues["binanceusdm"].accounts["main"].positions[1].qty == -1.0


# --- bad input: exit code 2, the file, the position and the key -------------------------------------------------


def _import_one(tmp_path: Path, positions: Any, balance: Any | None = None, *extra: str) -> tuple[int, str, str]:
    pos = _save(positions, tmp_path / "positions.json")
    bal = _save(balance if balance is not None else _load(BINANCE_MAIN / "balance.json"), tmp_path / "balance.json")
    return _run("import", "ccxt", "--positions", pos, "--balance", bal, "--venue", "binanceusdm",
                "-o", tmp_path / "book.yaml", *extra)


def test_an_unmappable_symbol_names_the_file_index_and_symbol(tmp_path: Path) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    positions[1]["symbol"] = "FOO/USDT:USDT"
    positions[1]["info"]["symbol"] = "FOOUSDT"
    code, _, err = _import_one(tmp_path, positions)
    assert code == 2
    assert (f"{tmp_path / 'positions.json'}: [1].symbol: cannot map FOO/USDT:USDT to a contract of "
            "binance-usdm-2024-10") in err
    assert "tried FOOUSDT (info.symbol)" in err
    assert not (tmp_path / "book.yaml").exists()


@pytest.mark.parametrize(("index", "key", "value", "message"), [
    (0, "entryPrice", None, "[0].entryPrice: missing (null or absent)"),
    (0, "markPrice", math.nan, "[0].markPrice: must be a finite number (got nan)"),
    (1, "contracts", math.inf, "[1].contracts: must be a finite number (got inf)"),
    (1, "contractSize", None, "[1].contractSize: missing (null or absent) (ccxt fills contractSize"),
    (0, "side", None, "[0].side: must be 'long' or 'short' (got None)"),
    (1, "marginMode", None, "[1].marginMode: must be 'cross' or 'isolated' (got None)"),
    (0, "leverage", "20", "[0].leverage: must be a number (got '20')"),
])
def test_missing_fields_and_nan_name_the_key(tmp_path: Path, index: int, key: str, value: Any, message: str) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    positions[index][key] = value
    code, _, err = _import_one(tmp_path, positions)
    assert code == 2
    assert f"{tmp_path / 'positions.json'}: {message}" in err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    del positions[0]["entryPrice"]
    positions[1]["markPrice"] = math.nan
    code, _, err = _import_one(tmp_path, positions)
    assert code == 2 and "[0].entryPrice" in err and "[1].markPrice" in err


def test_nan_in_the_balance_names_the_info_key(tmp_path: Path) -> None:
    balance = _load(BINANCE_MAIN / "balance.json")
    balance["info"]["assets"][1]["crossWalletBalance"] = "NaN"
    code, _, err = _import_one(tmp_path, _load(BINANCE_MAIN / "positions.json"), balance)
    assert code == 2
    assert f"{tmp_path / 'balance.json'}: info.assets[1].crossWalletBalance: must be a finite number (got 'NaN')" in err


def test_a_balance_without_the_venues_wallet_field(tmp_path: Path) -> None:
    okx_balance = _load(FIX / "okx" / "balance.json")  # an OKX balance where a Binance one is expected
    code, _, err = _import_one(tmp_path, _load(BINANCE_MAIN / "positions.json"), okx_balance)
    assert code == 2
    assert "balance.json: info: no per-asset rows with crossWalletBalance" in err


def test_hedge_mode_legs_and_a_mismatched_mapping(tmp_path: Path) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    other_leg = copy.deepcopy(positions[1])
    other_leg["side"] = "long"
    code, _, err = _import_one(tmp_path, [*positions, other_leg])
    assert code == 2
    assert "[2].symbol: COMP/USDT:USDT is already held at [1] (hedge mode" in err
    amap = {"version": 1, "accounts": [{"venue": "binanceusdm", "positions": str(BINANCE_MAIN / "positions.json"),
                                        "balance": str(BINANCE_MAIN / "balance.json"),
                                        "symbols": {"COMP/USDT:USDT": "ETHUSDT"}}]}
    code, _, err = _run("import", "ccxt", "--accounts", dump_yaml(amap, tmp_path / "map.yaml"),
                        "-o", tmp_path / "b.yaml")
    assert code == 2
    assert "[1].symbol: COMP/USDT:USDT maps to ETHUSDT but ccxt base COMP, binance-usdm-2024-10 underlying ETH" in err


def test_isolated_without_its_margin(tmp_path: Path) -> None:
    positions = _load(FIX / "binanceusdm" / "sub" / "positions.json")
    balance = _load(FIX / "binanceusdm" / "sub" / "balance.json")
    positions[0]["positionMargin"] = None
    code, _, err = _import_one(tmp_path, positions, balance)
    assert code == 0, err  # collateral − unrealizedPnl = 3.5555 − 0.143
    assert read_yaml(tmp_path / "book.yaml")["venues"]["binanceusdm"]["accounts"]["main"]["positions"][0][
        "isolated_margin"] == pytest.approx(3.4125, rel=1e-12)
    assert "isolated_margin of 1 position(s) from collateral − unrealizedPnl" in err
    positions[0]["collateral"] = None
    code, _, err = _import_one(tmp_path, positions, balance)
    assert code == 2 and "[0].positionMargin: an isolated position needs its margin" in err


def test_zero_size_positions_and_foreign_collateral_are_left_out_with_a_note(tmp_path: Path) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    positions[0]["contracts"] = 0.0
    balance = _load(BINANCE_MAIN / "balance.json")
    balance["info"]["assets"].append({**balance["info"]["assets"][0], "asset": "BNB", "crossWalletBalance": "0.5"})
    code, _, err = _import_one(tmp_path, positions, balance)
    assert code == 0, err
    book = read_yaml(tmp_path / "book.yaml")
    assert [p["symbol"] for p in book["venues"]["binanceusdm"]["accounts"]["main"]["positions"]] == ["COMPUSDT"]
    assert "1 zero-size position(s) left out (ADA/USDT:USDT)" in err
    assert "left out, not collateral under binance-usdm-2024-10: BNB 0.5" in err


def test_non_stable_collateral_needs_a_price(tmp_path: Path) -> None:
    balance = _load(BINANCE_MAIN / "balance.json")
    balance["info"]["assets"][1]["asset"] = "BTC"  # 103.12345678 BTC: would be priced by a BTCUSDT mark
    positions = _load(BINANCE_MAIN / "positions.json")
    code, _, err = _import_one(tmp_path, positions, balance)  # no BTC position here: no mark for BTC
    assert code == 2
    assert "balance.json: info.assets[1].crossWalletBalance: no USD price for BTC" in err
    assert "pass --prices" in err
    closes = tmp_path / "closes.csv"
    closes.write_text("date,BTC,USDT\n2025-02-19,96000,1.0002\n2025-02-20,97600.5,0.9999\n", encoding="utf-8")
    code, _, err = _import_one(tmp_path, positions, balance, "--prices", str(closes))
    assert code == 0, err
    assert read_yaml(tmp_path / "book.yaml")["prices"] == {"ADA": 0.4104759 * 0.9999, "BTC": 97600.5,
                                                           "COMP": 49.72023376 * 0.9999, "USDT": 0.9999}


def test_an_exchange_without_a_profile_uses_ccxts_total(tmp_path: Path) -> None:
    assert profile_for("somevenue").exchange == "generic"
    result = import_ccxt([AccountSource("somevenue", "main", BINANCE_MAIN / "positions.json",
                                        BINANCE_MAIN / "balance.json", rules="binance-usdm-2024-10")],
                         tmp_path / "book.yaml")
    account = result.book["venues"]["somevenue"]["accounts"]["main"]
    assert account["collateral"] == {"USDT": 23.72469206, "USDC": 103.12345678}  # ccxt's total here
    assert [p["symbol"] for p in account["positions"]] == ["ADAUSDT", "COMPUSDT"]
    assert any("unified 'total'" in n for n in result.notes)


def test_no_rules_for_an_exchange_without_a_built_in_set(tmp_path: Path) -> None:
    with pytest.raises(InputErrors, match=r"command line: rules: no built-in rule set for bybit"):
        import_ccxt([AccountSource("bybit", "main", BINANCE_MAIN / "positions.json", BINANCE_MAIN / "balance.json")],
                    tmp_path / "book.yaml")


# --- rules import ------------------------------------------------------------------------------------------------


def test_binance_tiers_round_trip_to_the_shipped_brackets(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    code, _, err = _run("rules", "import-ccxt", FIX / "binanceusdm" / "tiers.json", "--venue", "binanceusdm",
                        "-o", out, "--source", "fixture", "--date", "2024-10-24")
    assert code == 0, err
    rules = read_yaml(out)
    shipped = read_yaml(resolve_builtin("binance-usdm-2024-10")[1])
    assert sorted(rules["contracts"]) == ["ADAUSDT", "BTCUSDT", "COMPUSDT", "ETHUSDT", "WLDUSDT"]
    for cid, contract in rules["contracts"].items():
        assert contract["brackets"] == shipped["contracts"][cid]["brackets"]
    assert (rules["source"], rules["date"], rules["liquidation_fee_rate"]) == ("fixture", "2024-10-24", 0.0)
    assert "maintenance amounts differ" not in err  # Binance's cum agrees with the construction


def _bingx_rules(tmp_path: Path) -> Path:
    out = tmp_path / "bingx-rules.yaml"
    code, _, err = _run("rules", "import-ccxt", FIX / "bingx" / "tiers.json", "--venue", "bingx",
                        "--liquidation-fee-rate", "0.0005", "--max-leverage", "50", "-o", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize(("qty", "expected"), [
    (1000, 100_000 * 0.005 - 50 + 0.0005 * 100_000),    # tier 2: 500 − 50 + 50 = 500
    (3000, 300_000 * 0.01 - 1050 + 0.0005 * 300_000),   # tier 3: 3000 − 1050 + 150 = 2100
    (-100, 10_000 * 0.004 + 0.0005 * 10_000),           # tier 1, a short: 40 + 5 = 45
])
def test_bingx_closing_fee_round_trip(tmp_path: Path, qty: float, expected: float) -> None:
    rules = _bingx_rules(tmp_path)
    assert read_yaml(rules)["liquidation_fee_rate"] == 0.0005
    book = dump_yaml({"version": 1, "prices": {"LTC": 100.0, "USDT": 1.0}, "venues": {"bingx": {
        "rules": rules.name, "accounts": {"main": {"collateral": {"USDT": 1_000_000},
                                                   "positions": [{"symbol": "LTC-USDT", "qty": qty,
                                                                  "entry_price": 100.0}]}}}}},
        tmp_path / "book.yaml")
    code, out, err = _run("margin", book, "--json")
    assert code == 0, err
    position = json.loads(out)["accounts"][0]["positions"][0]
    assert position["maintenance_margin_settle"] == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx({1000: 500.0, 3000: 2100.0, -100: 45.0}[qty])


def test_closing_fee_venues_need_the_fee_and_bingx_needs_a_leverage(tmp_path: Path) -> None:
    tiers = FIX / "bingx" / "tiers.json"
    code, _, err = _run("rules", "import-ccxt", tiers, "--venue", "bingx", "-o", tmp_path / "r.yaml")
    assert code == 2
    assert f"{tiers}: bingx liquidates at maintenance margin + the closing fee" in err
    code, _, err = _run("rules", "import-ccxt", tiers, "--venue", "bingx", "--liquidation-fee-rate", "0",
                        "-o", tmp_path / "r.yaml")
    assert code == 2
    assert f"{tiers}: LTC/USDT:USDT: tiers without maxLeverage" in err and "--max-leverage" in err
    assert not (tmp_path / "r.yaml").exists()


def test_okx_tiers_in_contracts_are_converted_at_reference_prices(tmp_path: Path) -> None:
    markets = _load(FIX / "okx" / "markets.json")
    okx = ccxt.okx()
    okx.set_markets(list(markets.values()))
    raw = [  # rows of GET /api/v5/public/position-tiers (instType SWAP, instFamily BTC-USDT), sized in contracts
        {"instFamily": "BTC-USDT", "instId": "", "tier": "1", "minSz": "0", "maxSz": "2000", "mmr": "0.004",
         "imr": "0.008", "maxLever": "125", "baseMaxLoan": "", "quoteMaxLoan": "", "optMgnFactor": "0", "uly": ""},
        {"instFamily": "BTC-USDT", "instId": "", "tier": "2", "minSz": "2001", "maxSz": "10000", "mmr": "0.005",
         "imr": "0.01", "maxLever": "100", "baseMaxLoan": "", "quoteMaxLoan": "", "optMgnFactor": "0", "uly": ""},
    ]
    tiers = {"BTC/USDT:USDT": okx.parse_market_leverage_tiers(raw, okx.market("BTC/USDT:USDT"))}
    path = _save(tiers, tmp_path / "tiers.json")
    with pytest.raises(PmoptError, match="contract size is unknown"):
        rules_from_tiers_file(path, venue="okx")
    with pytest.raises(PmoptError, match="needs the USD price of BTC"):
        rules_from_tiers_file(path, venue="okx", markets=markets)
    result = rules_from_tiers_file(path, venue="okx", markets=markets, prices={"BTC": 100_000.0, "USDT": 1.0},
                                   price_note="closes of 2025-02-20")
    contract = result.rules["contracts"]["BTC-USDT-SWAP"]
    # 2000 contracts × 0.01 BTC × 100,000 USDT = 2,000,000 USDT; 10,000 contracts = 10,000,000 USDT
    assert contract["brackets"] == [{"cap": 2_000_000.0, "mmr": 0.004, "max_leverage": 125.0},
                                    {"cap": 10_000_000.0, "mmr": 0.005, "max_leverage": 100.0}]
    assert contract["contract_size"] == 0.01
    assert "caps converted to settle-asset notional at the reference prices (closes of 2025-02-20)" in \
        " ".join(result.notes)
    assert "tier 2 of BTC/USDT:USDT starts 1 contract above tier 1's cap" in " ".join(result.notes)
    assert "reference prices (closes of 2025-02-20)" in result.rules["not_covered"]


def test_venue_cum_that_disagrees_is_reported(tmp_path: Path) -> None:
    tiers = _load(FIX / "binanceusdm" / "tiers.json")
    tiers["ETH/USDT:USDT"][1]["info"]["cum"] = 51.0  # the construction gives 50 000 × (0.005 − 0.004) = 50
    result = rules_from_tiers_file(_save(tiers, tmp_path / "tiers.json"), venue="binanceusdm")
    assert result.notes == ("the venue's maintenance amounts differ from the cum construction (pmopt uses the "
                            "construction, spec §2): ETH/USDT:USDT tier 2: venue 51, construction 50",)


def test_import_with_tiers_writes_the_rules_beside_the_book(tmp_path: Path) -> None:
    out = tmp_path / "desk" / "book.yaml"
    out.parent.mkdir()
    code, _, err = _run("import", "ccxt", "--positions", FIX / "bingx" / "positions.json", "--balance",
                        FIX / "bingx" / "balance.json", "--venue", "bingx", "--tiers", FIX / "bingx" / "tiers.json",
                        "--liquidation-fee-rate", "0.0005", "--max-leverage", "50", "-o", out)
    assert code == 0, err
    assert read_yaml(out)["venues"]["bingx"]["rules"] == "bingx-rules.yaml"
    assert read_yaml(out.parent / "bingx-rules.yaml")["liquidation_fee_rate"] == 0.0005
    assert _run("margin", out)[0] == 0


# --- fetch (everything up to the network call) ------------------------------------------------------------------


class _Recorder:
    def __init__(self, result: Any) -> None:
        self.result = result
        self.calls: list[tuple] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return copy.deepcopy(self.result)


_MAKE_EXCHANGE = ccxt_fetch.make_exchange


def _mocked_binance(environ: dict[str, str]) -> Any:
    """A real ccxt binanceusdm object whose fetch methods return the fixture files."""
    exchange = _MAKE_EXCHANGE("binanceusdm", ccxt_fetch.credentials("binanceusdm", environ))
    markets = _load(FIX / "binanceusdm" / "markets.json")
    exchange.load_markets = _Recorder(markets)
    exchange.set_markets(list(markets.values()))
    exchange.fetch_positions = _Recorder(_load(BINANCE_MAIN / "positions.json"))
    exchange.fetch_balance = _Recorder(_load(BINANCE_MAIN / "balance.json"))
    exchange.fetch_leverage_tiers = _Recorder(_load(FIX / "binanceusdm" / "tiers.json"))
    return exchange


ENV = {"PMOPT_BINANCEUSDM_API_KEY": "key-from-env", "PMOPT_BINANCEUSDM_SECRET": "secret-from-env"}


def test_fetch_writes_the_files_and_chains_into_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    made: list[Any] = []

    def fake_make(exchange: str, creds: ccxt_fetch.Credentials, *, sandbox: bool = False) -> Any:
        assert (exchange, creds.api_key, creds.secret, sandbox) == ("binanceusdm", "key-from-env", "secret-from-env",
                                                                    False)
        made.append(_mocked_binance(ENV))
        return made[-1]

    monkeypatch.setattr(ccxt_fetch, "make_exchange", fake_make)
    data = tmp_path / "data"
    code, _, err = _run("fetch", "--exchange", "binanceusdm", "-o", data, "--book", tmp_path / "book.yaml")
    assert code == 0, err
    exchange = made[0]
    assert (exchange.apiKey, exchange.secret) == ("key-from-env", "secret-from-env")
    assert exchange.fetch_positions.calls == [(None,)]
    assert exchange.fetch_leverage_tiers.calls == [(["ADA/USDT:USDT", "COMP/USDT:USDT"],)]
    assert _load(data / "positions.json") == _load(BINANCE_MAIN / "positions.json")
    assert _load(data / "balance.json") == _load(BINANCE_MAIN / "balance.json")
    assert _load(data / "tiers.json") == _load(FIX / "binanceusdm" / "tiers.json")
    assert sorted(_load(data / "markets.json")) == ["ADA/USDT:USDT", "COMP/USDT:USDT"]
    book = read_yaml(tmp_path / "book.yaml")
    assert book["venues"]["binanceusdm"]["accounts"]["main"]["collateral"] == {"USDT": 23.72469206,
                                                                              "USDC": 103.12345678}


def test_fetch_per_symbol_tiers_and_no_tiers(tmp_path: Path) -> None:
    exchange = _mocked_binance(ENV)
    exchange.has = {**exchange.has, "fetchLeverageTiers": False, "fetchMarketLeverageTiers": True}
    per_symbol = _Recorder([])
    exchange.fetch_market_leverage_tiers = per_symbol
    result = ccxt_fetch.fetch_account(exchange, tmp_path / "a", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    assert per_symbol.calls == [("BTC/USDT:USDT",), ("ETH/USDT:USDT",)]
    assert exchange.fetch_positions.calls == [(["BTC/USDT:USDT", "ETH/USDT:USDT"],)]
    assert result.symbols == ("BTC/USDT:USDT", "ETH/USDT:USDT")
    exchange.has = {**exchange.has, "fetchMarketLeverageTiers": False}
    result = ccxt_fetch.fetch_account(exchange, tmp_path / "b")
    assert _load(tmp_path / "b" / "tiers.json") == {}
    assert result.notes == ("binanceusdm publishes no leverage tiers through ccxt: tiers.json is empty (use --rules)",)


def test_fetch_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    code, _, err = _run("fetch", "--exchange", "binanceusdm", "-o", tmp_path)
    assert code == 2
    assert "environment: PMOPT_BINANCEUSDM_API_KEY and PMOPT_BINANCEUSDM_SECRET: not set" in err
    monkeypatch.setenv("PMOPT_NOSUCHVENUE_API_KEY", "k")
    monkeypatch.setenv("PMOPT_NOSUCHVENUE_SECRET", "s")
    code, _, err = _run("fetch", "--exchange", "nosuchvenue", "-o", tmp_path)
    assert code == 2 and "--exchange: nosuchvenue: not a ccxt exchange id" in err
    assert ccxt_fetch.env_prefix("okx") == "PMOPT_OKX"
    assert ccxt_fetch.credentials("okx", {"PMOPT_OKX_API_KEY": "k", "PMOPT_OKX_SECRET": "s",
                                          "PMOPT_OKX_PASSWORD": "p"}).password == "p"
    exchange = _mocked_binance(ENV)

    def down(*_: Any) -> Any:
        raise ccxt.NetworkError("binanceusdm GET https://fapi.binance.com/fapi/v3/account timed out")

    exchange.fetch_balance = down
    with pytest.raises(ccxt_fetch.FetchError, match="binanceusdm: fetch_balance failed: NetworkError") as info:
        ccxt_fetch.fetch_account(exchange, tmp_path / "c")
    assert info.value.exit_code == 1


# --- the fixtures are ccxt's output --------------------------------------------------------------------------------


_USED = ("symbol", "contracts", "contractSize", "side", "entryPrice", "markPrice", "marginMode", "positionMargin",
         "collateral", "unrealizedPnl", "leverage")


def test_the_fixtures_regenerate_from_the_raw_responses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    module.main()
    for path in FIX.rglob("positions.json"):
        fresh = _load(tmp_path / path.relative_to(FIX))
        saved = _load(path)
        assert [{k: p.get(k) for k in _USED} for p in fresh] == [{k: p.get(k) for k in _USED} for p in saved]
    for path in [*FIX.rglob("balance.json"), *FIX.rglob("tiers.json")]:
        fresh, saved = _load(tmp_path / path.relative_to(FIX)), _load(path)
        assert fresh.get("info", fresh) == saved.get("info", saved)
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize(("exchange", "symbol", "info", "expected"), [
    ("binanceusdm", "BTC/USDT:USDT-241227", {}, "BTCUSDT_241227"),
    ("binancecoinm", "BTC/USD:BTC", {"symbol": "BTCUSD_PERP"}, "BTCUSD_PERP"),
    ("binancecoinm", "ETH/USD:ETH", {}, "ETHUSD_PERP"),
    ("okx", "ETH/USD:ETH", {}, "ETH-USD-SWAP"),
    ("okx", "BTC/USDT:USDT-250328", {}, "BTC-USDT-250328"),
    ("bybit", "BTC/USDC:USDC", {}, "BTCPERP"),
    ("bybit", "BTC/USD:BTC", {}, "BTCUSD"),
    ("deribit", "BTC/USD:BTC", {}, "BTC-PERPETUAL"),
    ("deribit", "BTC/USD:BTC-250328", {}, "BTC-28MAR25"),
    ("deribit", "ETH/USDC:USDC", {}, "ETH_USDC-PERPETUAL"),
    ("hyperliquid", "SOL/USDC:USDC", {"position": {"coin": "SOL"}}, "SOL"),
    ("dydx", "ETH/USD:USDC", {}, "ETH-USD"),
    ("mexc", "BTC/USDT:USDT", {}, "BTC_USDT"),
    ("weex", "DOGE/USDT:USDT", {}, "DOGEUSDT"),
])
def test_venue_id_conventions(exchange: str, symbol: str, info: dict, expected: str) -> None:
    from risk_models.ccxt_tiers import parse_ccxt_symbol
    from risk_models.ccxt_venues import candidate_ids

    assert next(candidate_ids(profile_for(exchange), parse_ccxt_symbol(symbol), info))[0] == expected


def test_profiles_from_rule_set_names() -> None:
    assert profile_for(None, "okx-pm-2025-01").exchange == "okx"
    assert profile_for("binance-usdm").exchange == "binanceusdm"
    assert profile_for("my-desk", "hyperliquid").exchange == "hyperliquid"


def test_default_margin_mode_fills_an_empty_margin_mode(tmp_path: Path) -> None:
    positions = _load(BINANCE_MAIN / "positions.json")
    for p in positions:
        p["marginMode"] = None  # as ccxt leaves it for Bybit
    code, _, err = _import_one(tmp_path, positions, None, "--default-margin-mode", "cross")
    assert code == 0, err
    modes = [p["margin_mode"] for p in read_yaml(tmp_path / "book.yaml")["venues"]["binanceusdm"]["accounts"]["main"][
        "positions"]]
    assert modes == ["cross", "cross"]


def test_map_refuses_a_repeated_account_and_two_rule_sets_for_one_venue(tmp_path: Path) -> None:
    entry = {"venue": "binance", "exchange": "binanceusdm", "positions": str(BINANCE_MAIN / "positions.json"),
             "balance": str(BINANCE_MAIN / "balance.json")}
    other_rules = {**entry, "account": "b", "rules": "binance-usdm-2021"}
    amap = dump_yaml({"version": 1, "accounts": [entry, entry, other_rules]}, tmp_path / "map.yaml")
    code, _, err = _run("import", "ccxt", "--accounts", amap, "-o", tmp_path / "b.yaml")
    assert code == 2
    assert f"{amap}: accounts[1]: account: account binance/main is already imported from {amap}: accounts[0]" in err
    assert f"{amap}: accounts[2]: rules: venue binance already uses rules binance-usdm, not binance-usdm-2021" in err
    code, _, err = _run("import", "ccxt", "--accounts", amap, "--venue", "x", "-o", tmp_path / "b.yaml")
    assert code == 2 and "--accounts takes every account from the map" in err


def test_rules_in_json_syntax_load_like_any_rules_file(tmp_path: Path) -> None:
    out = tmp_path / "binance.json"
    assert _run("rules", "import-ccxt", FIX / "binanceusdm" / "tiers.json", "--venue", "binanceusdm", "-o", out)[0] == 0
    assert out.read_text().startswith("{")
    position = {"symbol": "BTCUSDT", "qty": 1, "entry_price": 1e5}
    book = dump_yaml({"version": 1, "prices": {"BTC": 100_000.0, "USDT": 1.0}, "venues": {"b": {
        "rules": out.name, "accounts": {"main": {"collateral": {"USDT": 10_000}, "positions": [position]}}}}},
        tmp_path / "book.yaml")
    code, stdout, err = _run("margin", book, "--json")
    assert code == 0, err
    # 100,000 USDT in bracket 2 (50k–600k, 0.5 %, cum 50): 500 − 50 = 450
    assert json.loads(stdout)["accounts"][0]["positions"][0]["maintenance_margin_settle"] == pytest.approx(450.0)
