"""Books from a desk's tables: `pmopt import tables` (risk_models/table_import.py).

The desk: Binance (binance-usdm-2024-10) main holds 100,000 USDT, a cross BTCUSDT long (2 BTC, entry 95,000, mark
97,500) and an isolated DOGEUSDT long (100,000 DOGE, entry 0.27, 3,000 USDT isolated margin, 10x, pinned);
Hyperliquid vault holds 50,000 USDC and a cross SOL short (100 SOL, entry 180); the wallet holds 20,000 USDT and
1.5 BTC (two labelled rows).  Prices: BTC 97,600, DOGE 0.25, SOL 170, USDT 0.9998; USDC 1.0 as a stablecoin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from risk_models.errors import InputErrors
from risk_models.table_import import import_tables, read_table
from risk_models.yaml_io import read_yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ("--rules", "binance=binance-usdm-2024-10", "--rules", "hyperliquid=hyperliquid")

POSITIONS = """\
venue,account,symbol,qty,entry_price,mark_price,margin_mode,isolated_margin,leverage,pinned
binance,main,BTCUSDT,2,95000,97500,cross,,,
binance,main,DOGEUSDT,100000,0.27,,isolated,3000,10,true
hyperliquid,vault,SOL,-100,180,,cross,,,
"""
BALANCES = """\
venue,account,asset,amount
binance,main,USDT,100000
hyperliquid,vault,USDC,50000
wallet,,USDT,20000
wallet,cold,BTC,1
wallet,treasury,BTC,0.5
"""
PRICES = """\
asset,price
BTC,97600
DOGE,0.25
SOL,170
USDT,0.9998
"""
CLOSES = """\
date,BTC,DOGE,SOL,USDT,USDC
2025-02-18,95000,0.24,160,0.9997,1.0
2025-02-19,96000,0.26,165,0.9999,0.9999
2025-02-20,97600,0.25,170,0.9998,1.0
"""

EXPECTED = {
    "version": 1,
    "prices": {"BTC": 97600.0, "DOGE": 0.25, "SOL": 170.0, "USDC": 1.0, "USDT": 0.9998},
    "venues": {
        "binance": {"rules": "binance-usdm-2024-10", "accounts": {"main": {
            "collateral": {"USDT": 100000.0},
            "positions": [
                {"symbol": "BTCUSDT", "qty": 2.0, "entry_price": 95000.0, "mark_price": 97500.0,
                 "margin_mode": "cross"},
                {"symbol": "DOGEUSDT", "qty": 100000.0, "entry_price": 0.27, "margin_mode": "isolated",
                 "isolated_margin": 3000.0, "leverage": 10.0, "pinned": True}]}}},
        "hyperliquid": {"rules": "hyperliquid", "accounts": {"vault": {
            "collateral": {"USDC": 50000.0},
            "positions": [{"symbol": "SOL", "qty": -100.0, "entry_price": 180.0, "margin_mode": "cross"}]}}},
    },
    "wallet": {"USDT": 20000.0, "BTC": 1.5},
}


def _run(*args: Any) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.stdout, result.stderr


def _write(folder: Path, positions: str = POSITIONS, balances: str = BALANCES, prices: str = PRICES
           ) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "positions.csv", folder / "balances.csv", folder / "prices.csv"
    for path, text in zip(paths, (positions, balances, prices), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def _parquet(csv_path: Path) -> Path:
    """The same table as Parquet (empty cells become nulls; numbers and flags typed by pyarrow)."""
    table = pacsv.read_csv(csv_path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    out = csv_path.with_suffix(".parquet")
    pq.write_table(table, out)
    return out


def _import(positions: Path, balances: Path, prices: Path | None, out: Path, *extra: Any) -> tuple[int, str]:
    args = ["import", "tables", "--positions", positions, "--balances", balances, *RULES, *extra, "-o", out]
    if prices is not None:
        args[6:6] = ["--prices", prices]
    code, _, err = _run(*args)
    return code, err


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The desk's CSV tables imported into book.yaml."""
    folder = tmp_path_factory.mktemp("desk")
    positions, balances, prices = _write(folder)
    code, err = _import(positions, balances, prices, folder / "book.yaml")
    assert code == 0, err
    return folder / "book.yaml"


# --- the desk -----------------------------------------------------------------------------------------------------


def test_csv_desk_gives_the_hand_written_book(desk: Path) -> None:
    assert read_yaml(desk) == EXPECTED
    text = desk.read_text(encoding="utf-8")
    assert text.startswith("# Written by pmopt import tables: positions ")
    assert "# note: prices of USDC: 1.0 USD (stablecoin)" in text
    assert "# note: wallet BTC: the sum of 2 rows (line 5, line 6)" in text


def test_parquet_tables_give_the_identical_book(tmp_path: Path, desk: Path) -> None:
    paths = [_parquet(p) for p in _write(tmp_path)]
    assert read_table(paths[0]).header == "schema"
    out = tmp_path / "book.yaml"
    code, err = _import(*paths, out)
    assert code == 0, err
    assert read_yaml(out) == read_yaml(desk) == EXPECTED
    def body(path: Path) -> list[str]:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]

    assert body(out) == body(desk)
    assert "# note: wallet BTC: the sum of 2 rows (row 3, row 4)" in out.read_text(encoding="utf-8")


def test_the_book_round_trips_through_pmopt_margin(desk: Path) -> None:
    code, out, err = _run("margin", desk, "--json")
    assert code == 0, err
    accounts = {(a["venue"], a["account"]): a for a in json.loads(out)["accounts"]}
    binance, vault = accounts["binance", "main"], accounts["hyperliquid", "vault"]
    # (100,000 USDT + PnL 2 × (97,500 − 95,000) USDT) × 0.9998 USD/USDT; the isolated DOGE bucket is apart
    assert binance["equity"] == pytest.approx(105000 * 0.9998, rel=1e-12)
    # BTCUSDT notional 195,000 USDT in the 50k–600k bracket: 0.005 × 195,000 − 50,000 × (0.005 − 0.004) = 925 USDT
    assert binance["maintenance_margin"] == pytest.approx(925 * 0.9998, rel=1e-12)
    # 50,000 USDC + short PnL −100 × (170 − 180) = 1,000 USDC at 1.0; MM 0.025 × 17,000
    assert vault["equity"] == pytest.approx(51000.0, rel=1e-12)
    assert vault["maintenance_margin"] == pytest.approx(425.0, rel=1e-12)
    doge = next(p for p in binance["positions"] if p["symbol"] == "DOGEUSDT")
    assert (doge["margin_mode"], doge["isolated_margin"]) == ("isolated", 3000.0)


def test_optimize_runs_on_the_imported_book(desk: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nobjective: carry_cost\ncarry_horizon_days: 7\n"
        "risk_model: {kind: historical, horizon_days: 1, window_days: 1095, confidence: 0.99, measure: es}\n"
        "cross: {buffer: 1.5}\nisolated: {liquidation_distance: 0.25}\n"
        "yields: {USDT: 0.05, USDC: 0.045, BTC: 0.0}\ntransfer_cost_bps: 1\nmode_switch_cost_bps: 5\n",
        encoding="utf-8")
    code, out, err = _run("optimize", desk, "--policy", policy, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "optimal"
    # today's carry: 103,000 USDT locked (cross 100,000 + isolated 3,000) at 0.9998 and 5 %, 50,000 USDC at 4.5 %
    before = (103000 * 0.9998 * 0.05 + 50000 * 0.045) * 7 / 365
    assert result["objective_value_before"] == pytest.approx(before, abs=1e-6)
    assert result["objective_value"] < before


# --- prices, rules and the wallet -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of, day, btc, usdt", [
    ("2025-02-19T00:00:00Z", "2025-02-19", 96000.0, 0.9999),
    (None, "2025-02-20", 97600.0, 0.9998),
])
def test_wide_closes_take_the_row_at_as_of_or_the_last(tmp_path: Path, as_of: str | None, day: str, btc: float,
                                                       usdt: float) -> None:
    positions, balances, prices = _write(tmp_path, prices=CLOSES)
    out = tmp_path / "book.yaml"
    code, err = _import(positions, balances, prices, out, *(("--as-of", as_of) if as_of else ()))
    assert code == 0, err
    book = read_yaml(out)
    assert book.get("as_of") == as_of
    assert book["prices"]["BTC"] == btc and book["prices"]["USDT"] == usdt
    assert book["prices"]["USDC"] == (0.9999 if as_of else 1.0)  # from the table, not the stablecoin default
    assert f"the row dated {day}" in err


def test_wide_closes_without_the_as_of_row_is_an_error(tmp_path: Path) -> None:
    positions, balances, prices = _write(tmp_path, prices=CLOSES)
    code, err = _import(positions, balances, prices, tmp_path / "b.yaml", "--as-of", "2025-03-01")
    assert code == 2
    assert f"error: {prices}: date: no row dated 2025-03-01 (the --as-of date) (the file covers 2025-02-18 to " \
           "2025-02-20" in err


def test_without_prices_the_marks_and_stablecoins_price_the_book(tmp_path: Path) -> None:
    marked = POSITIONS.replace("0.27,,isolated", "0.27,0.25,isolated").replace("180,,cross", "180,170,cross")
    positions, balances, _ = _write(tmp_path, positions=marked, balances=BALANCES.replace("wallet,cold,BTC,1\n", ""))
    out = tmp_path / "book.yaml"
    code, err = _import(positions, balances, None, out)
    assert code == 0, err
    # BTC = BTCUSDT mark 97,500 USDT × 1.0 USD (USDT, a stablecoin without a price table)
    assert read_yaml(out)["prices"] == {"BTC": 97500.0, "DOGE": 0.25, "SOL": 170.0, "USDC": 1.0, "USDT": 1.0}


def test_rules_column_instead_of_the_option(tmp_path: Path) -> None:
    with_rules = POSITIONS.replace("pinned\n", "pinned,rules\n").replace(",cross,,,\nbinance", ",cross,,,,\nbinance")
    lines = with_rules.splitlines()
    lines[1] += "binance-usdm-2024-10"
    lines[2] += ","
    lines[3] += ",hyperliquid"
    positions, balances, prices = _write(tmp_path, positions="\n".join(lines) + "\n")
    out = tmp_path / "book.yaml"
    code, _, err = _run("import", "tables", "--positions", positions, "--balances", balances, "--prices", prices,
                        "-o", out)
    assert code == 0, err
    assert read_yaml(out) == EXPECTED
    code, _, err = _run("import", "tables", "--positions", positions, "--balances", balances, "--prices", prices,
                        "--rules", "binance=binance-usdm-2021", "-o", out)
    assert code == 2
    assert "error: --rules: binance=binance-usdm-2021: the positions table gives rules 'binance-usdm-2024-10' " \
           "to binance (line 2, column rules)" in err


def test_a_rules_file_is_written_relative_to_the_book(tmp_path: Path) -> None:
    positions, balances, prices = _write(tmp_path / "in")
    rules = ROOT / "risk_models" / "rulesets" / "hyperliquid-2026-03.yaml"
    out = tmp_path / "out" / "book.yaml"
    code, _, err = _run("import", "tables", "--positions", positions, "--balances", balances, "--prices", prices,
                        "--rules", "binance=binance-usdm-2024-10", "--rules", f"hyperliquid={rules}", "-o", out)
    assert code == 0, err
    ref = read_yaml(out)["venues"]["hyperliquid"]["rules"]
    assert (out.parent / ref).resolve() == rules.resolve()
    assert _run("margin", out, "--json")[0] == 0


# --- bad input: file, row and column, exit code 2 -------------------------------------------------------------------


def _edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


BAD = {
    "unknown column": ("positions", _edit(POSITIONS, "pinned\n", "pinned,colour\n").replace(",,\n", ",,,\n")
                       .replace("true\n", "true,\n"),
                       "positions.csv: line 1, column colour: unknown column"),
    "missing column": ("positions", POSITIONS.replace(",entry_price", "", 1).replace(",95000", "", 1)
                       .replace(",0.27", "").replace(",180", ""),
                       "positions.csv: line 1: missing column entry_price"),
    "NaN": ("positions", _edit(POSITIONS, "SOL,-100", "SOL,nan"),
            "positions.csv: line 4, column qty: must be a finite number (got 'nan')"),
    "inf": ("balances", _edit(BALANCES, "USDC,50000", "USDC,inf"),
            "balances.csv: line 3, column amount: must be a finite number (got 'inf')"),
    "not a number": ("positions", _edit(POSITIONS, "97500", "97k"),
                     "positions.csv: line 2, column mark_price: must be a number (got '97k')"),
    "empty required cell": ("balances", _edit(BALANCES, "binance,main,USDT", "binance,,USDT"),
                            "balances.csv: line 2, column account: empty cell"),
    "margin_mode": ("positions", _edit(POSITIONS, "-100,180,,cross", "-100,180,,Cross"),
                    "positions.csv: line 4, column margin_mode: must be 'cross' or 'isolated' (got 'Cross')"),
    "duplicate": ("positions", POSITIONS + "binance,main,BTCUSDT,1,96000,,cross,,,\n",
                  "positions.csv: line 5, column symbol: BTCUSDT of binance/main is already held at line 2"),
    "duplicate balance": ("balances", BALANCES + "binance,main,USDT,5\n",
                          "balances.csv: line 7, column asset: USDT of binance/main is already given at line 2"),
    "isolated without margin": ("positions", _edit(POSITIONS, "isolated,3000", "isolated,"),
                                "positions.csv: line 3, column isolated_margin: an isolated position needs "
                                "isolated_margin"),
    "unknown symbol": ("positions", _edit(POSITIONS, "vault,SOL", "vault,SOLUSDT"),
                       "positions.csv: line 4, column symbol: unknown symbol 'SOLUSDT' in hyperliquid-2026-03"),
    "zero qty": ("positions", _edit(POSITIONS, "SOL,-100", "SOL,0"),
                 "positions.csv: line 4, column qty: qty is 0"),
    "missing price": ("prices", _edit(PRICES, "SOL,170\n", ""),
                      "positions.csv: line 4, column symbol: no USD price for SOL, the underlying of SOL"),
    "missing wallet price": ("balances", BALANCES + "wallet,,ETH,3\n",
                             "balances.csv: line 7, column asset: no USD price for ETH, held in the wallet"),
    "collateral not accepted": ("balances", BALANCES + "hyperliquid,vault,BTC,1\n",
                                "balances.csv: line 7, column asset: BTC is not accepted as collateral by "
                                "hyperliquid-2026-03"),
    "venue without rules": ("balances", BALANCES + "okx,main,USDT,10\n",
                            "balances.csv: line 7, column venue: venue okx has no rule set (pass --rules okx=RULESET"),
    "position in the wallet": ("positions", POSITIONS + "wallet,,BTCUSDT,1,1,,,,,\n",
                               "positions.csv: line 5, column venue: 'wallet' is the off-venue holdings"),
    "bad price": ("prices", _edit(PRICES, "DOGE,0.25", "DOGE,-0.25"),
                  "prices.csv: line 3, column price: must be > 0 (got -0.25)"),
    "prices column": ("prices", PRICES.replace("asset,price", "asset,price,source").replace("\n", ",x\n")
                      .replace("source,x", "source"),
                      "prices.csv: line 1, column source: unknown column (columns: asset, price)"),
    "multi-assets": ("balances", BALANCES + "binance,main,BTC,1\n",
                     "balances.csv: venue binance, account main: binance-usdm-2024-10 cannot hold isolated "
                     "positions (DOGEUSDT) while the cross pool holds non-settle collateral (BTC)"),
    "short row": ("balances", _edit(BALANCES, "USDC,50000", "USDC"),
                  "balances.csv: line 3: 3 cells, the header has 4"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_names_file_row_and_column(tmp_path: Path, case: str) -> None:
    which, text, message = BAD[case]
    tables = {"positions": POSITIONS, "balances": BALANCES, "prices": PRICES, which: text}
    paths = _write(tmp_path, **tables)
    out = tmp_path / "book.yaml"
    code, err = _import(*paths, out)
    assert code == 2, err
    assert f"error: {tmp_path}/{message}" in err
    assert not out.exists()


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    positions = (_edit(POSITIONS, "vault,SOL,-100", "vault,XRP,nan")
                 + "binance,main,BTCUSDT,1,96000,,sideways,,,\nbinance,main,ETHUSDT,1,2700,,isolated,,,\n")
    balances = BALANCES + "wallet,,ETH,inf\n"
    paths = _write(tmp_path, positions=positions, balances=balances)
    with pytest.raises(InputErrors) as caught:
        import_tables(*paths[:2], tmp_path / "book.yaml", prices=paths[2],
                      rules={"binance": "binance-usdm-2024-10", "hyperliquid": "hyperliquid"})
    found = [(Path(e.file).name, e.key) for e in caught.value.errors]
    assert found == [
        ("positions.csv", "line 4, column qty"),                 # NaN
        ("positions.csv", "line 5, column symbol"),              # BTCUSDT again
        ("positions.csv", "line 5, column margin_mode"),         # sideways
        ("positions.csv", "line 6, column symbol"),              # no ETH price
        ("positions.csv", "line 6, column isolated_margin"),     # isolated without its margin
        ("balances.csv", "line 7, column amount"),               # inf
    ]


def test_parquet_rows_are_named_by_row_index(tmp_path: Path) -> None:
    paths = _write(tmp_path, positions=_edit(POSITIONS, "vault,SOL", "vault,SOLUSDT"))
    positions = _parquet(paths[0])
    code, err = _import(positions, paths[1], paths[2], tmp_path / "book.yaml")
    assert code == 2
    assert f"error: {positions}: row 2, column symbol: unknown symbol 'SOLUSDT' in hyperliquid-2026-03" in err


def test_parquet_nan_is_an_error_and_null_an_empty_cell(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    table = pacsv.read_csv(paths[0], convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    entries = table.column("entry_price").to_pylist()
    entries[2] = float("nan")
    import pyarrow as pa

    table = table.set_column(table.schema.get_field_index("entry_price"), "entry_price", pa.array(entries))
    positions = tmp_path / "positions.parquet"
    pq.write_table(table, positions)
    assert table.column("mark_price").null_count == 2  # empty marks: nulls, not NaN
    code, err = _import(positions, paths[1], paths[2], tmp_path / "book.yaml")
    assert code == 2
    assert f"error: {positions}: row 2, column entry_price: must be a finite number (got nan)" in err
    assert err.count("error:") == 1


def test_rules_option_needs_a_known_venue_and_the_venue_a_rule_set(tmp_path: Path) -> None:
    paths = _write(tmp_path)
    code, _, err = _run("import", "tables", "--positions", paths[0], "--balances", paths[1], "--prices", paths[2],
                        "--rules", "binance=binance-usdm-2024-10", "--rules", "hyperliqiud=hyperliquid",
                        "-o", tmp_path / "b.yaml")
    assert code == 2
    assert "error: --rules: hyperliqiud=hyperliquid: venue hyperliqiud is in neither table" in err
    assert f"error: {paths[0]}: line 4, column venue: venue hyperliquid has no rule set" in err
    code, _, err = _run("import", "tables", "--positions", paths[0], "--balances", paths[1], "--rules", "binance",
                        "-o", tmp_path / "b.yaml")
    assert code == 2 and "write VENUE=RULESET" in err
    code, err = _import(*paths, tmp_path / "b.yaml", "--rules", "okx=okx-ultra")
    assert code == 2 and "error: --rules: okx=okx-ultra: venue okx is in neither table" in err


def test_inverse_contracts_are_in_contracts(tmp_path: Path) -> None:
    positions = POSITIONS + "deribit,hedge,BTC-PERPETUAL,-1000,95000,,cross,,,\n"
    balances = BALANCES + "deribit,hedge,BTC,2\n"
    paths = _write(tmp_path, positions=positions, balances=balances)
    out = tmp_path / "book.yaml"
    code, err = _import(*paths, out, "--rules", "deribit=deribit-standard")
    assert code == 0, err
    assert read_yaml(out)["venues"]["deribit"]["accounts"]["hedge"]["positions"] == [
        {"symbol": "BTC-PERPETUAL", "qty": -1000.0, "entry_price": 95000.0, "margin_mode": "cross"}]
    code, printed, err = _run("margin", out, "--json")
    assert code == 0, err
    hedge = next(a for a in json.loads(printed)["accounts"] if a["venue"] == "deribit")
    # 1000 contracts × 10 USD short: PnL −10,000 × (1/95,000 − 1/97,600) BTC, marked at the BTC price 97,600
    pnl_btc = -10000 * (1 / 95000 - 1 / 97600)
    assert hedge["equity"] == pytest.approx((2 + pnl_btc) * 97600, rel=1e-12)
    assert hedge["positions"][0]["notional"] == pytest.approx(10000.0, rel=1e-12)
