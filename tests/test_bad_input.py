"""Bad input never gives a traceback: exit code 2 and a message naming the file and the key (spec §0, §6).

Every case writes a small book (and its rules file) into a temp folder, runs ``pmopt margin BOOK`` through click's
CliRunner and checks the exit code, the absence of a traceback and that the message names the file and the key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from optimizer.cli import main
from risk_models.errors import InputError, InputErrors
from risk_models.loading import load_book
from tests.conftest import Books, dump_yaml, linear, rules_dict

BRACKETS = [
    {"cap": 50000, "mmr": 0.004, "max_leverage": 125},
    {"cap": 250000, "mmr": 0.005, "max_leverage": 100},
    {"cap": None, "mmr": 0.01, "max_leverage": 50},
]
LIMITED = [  # a finite last cap: the venue's position limit (1,000,000 USDT)
    {"cap": 100000, "mmr": 0.01, "max_leverage": 50},
    {"cap": 1000000, "mmr": 0.02, "max_leverage": 25},
]
POS = "venues.bin.accounts.main.positions"


def base_rules(**top: Any) -> dict[str, Any]:
    return rules_dict(
        {
            "BTCUSDT": linear("BTC", BRACKETS),
            "ETHUSDT": linear("ETH", BRACKETS),
            "BTCUSDC": linear("BTC", BRACKETS, settle="USDC"),
            "SOLUSDT": linear("SOL", LIMITED),
            "XRPUSDT": linear("XRP", BRACKETS, isolated_allowed=False),
            "BTCUSD": {"underlying": "BTC", "settle": "BTC", "kind": "inverse", "contract_size": 100,
                       "brackets": [{"cap": 50, "mmr": 0.005, "max_leverage": 100},
                                    {"cap": None, "mmr": 0.01, "max_leverage": 50}]},
        },
        collateral={
            "USDT": {"tiers": [{"cap": None, "ratio": 1.0}]},
            "BTC": {"tiers": [{"cap": 1000000, "ratio": 1.0}, {"cap": None, "ratio": 0.9}]},
        },
        **top,
    )


def base_book() -> dict[str, Any]:
    return {
        "version": 1,
        "prices": {"BTC": 30000.0, "ETH": 2000.0, "SOL": 20.0, "XRP": 0.5, "USDT": 1.0},
        "venues": {
            "bin": {
                "rules": "rules.yaml",
                "accounts": {
                    "main": {
                        "collateral": {"USDT": 100000.0},
                        "positions": [
                            {"symbol": "BTCUSDT", "qty": 1.5, "entry_price": 29000.0, "margin_mode": "cross"},
                            {"symbol": "ETHUSDT", "qty": -10.0, "entry_price": 2100.0, "margin_mode": "isolated",
                             "isolated_margin": 2000.0},
                        ],
                    },
                },
            },
        },
        "wallet": {"USDT": 50000.0},
    }


def run(path: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["margin", str(path), *extra])


def assert_bad_input(result: Result, path: Path | str, *fragments: str) -> str:
    """Exit code 2, a SystemExit (not an escaped exception), no traceback; message names file and fragments."""
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 2, f"exit code {result.exit_code}, output:\n{text}\nexception: {result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in text
    assert str(path) in text, f"file {path} not named in:\n{text}"
    for frag in fragments:
        assert frag in text, f"{frag!r} not in:\n{text}"
    return text


@pytest.fixture
def write(books: Books):
    """write(book, rules=base_rules(), extra={name: rules}) → path of the book."""

    def _write(book: dict[str, Any], rules: dict[str, Any] | None = None,
               extra: dict[str, dict[str, Any]] | None = None) -> Path:
        files = {"rules.yaml": base_rules() if rules is None else rules, **(extra or {})}
        return books.write(book, files)

    return _write


def test_base_book_is_valid(write) -> None:
    path = write(base_book())
    result = run(path, "--json")
    assert result.exit_code == 0, result.output


# -- missing prices -------------------------------------------------------------------------------------------

def _acct(book: dict[str, Any]) -> dict[str, Any]:
    return book["venues"]["bin"]["accounts"]["main"]


def test_missing_price_of_underlying(write) -> None:
    book = base_book()
    del book["prices"]["BTC"]
    path = write(book)
    assert_bad_input(run(path), path, "prices.BTC", "missing price", f"{POS}[0]", "underlying of BTCUSDT", "add")


def test_missing_price_of_settle_asset(write) -> None:
    book = base_book()
    _acct(book)["positions"].append({"symbol": "BTCUSDC", "qty": 0.1, "entry_price": 29000.0})
    path = write(book)
    assert_bad_input(run(path), path, "prices.USDC", f"{POS}[2]", "settle asset of BTCUSDC")


def test_missing_price_of_collateral(write) -> None:
    book = base_book()
    _acct(book)["collateral"]["SOL"] = 10.0
    rules = base_rules()
    rules["collateral"]["SOL"] = {}
    del book["prices"]["SOL"]
    path = write(book, rules)
    assert_bad_input(run(path), path, "prices.SOL", "venues.bin.accounts.main.collateral.SOL", "collateral")


def test_missing_price_of_wallet_asset(write) -> None:
    book = base_book()
    book["wallet"]["USDC"] = 10.0
    path = write(book)
    assert_bad_input(run(path), path, "prices.USDC", "wallet.USDC")


def test_missing_settle_price_names_every_use(write) -> None:
    book = base_book()
    book["prices"].pop("USDT")
    path = write(book)
    text = assert_bad_input(run(path), path, "prices.USDT", "wallet.USDT",
                            "venues.bin.accounts.main.collateral.USDT", f"{POS}[0]", f"{POS}[1]")
    assert "settle asset of BTCUSDT" in text


# -- unknown / bad symbols ---------------------------------------------------------------------------------------

def test_unknown_symbol_suggests_close_names(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0]["symbol"] = "BTCUSTD"
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].symbol", "BTCUSTD", "did you mean", "BTCUSDT")


def test_duplicated_symbol_in_one_account(write) -> None:
    book = base_book()
    positions = book["venues"]["bin"]["accounts"]["main"]["positions"]
    positions.append({"symbol": "BTCUSDT", "qty": -0.5, "entry_price": 31000.0})
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[2].symbol", "already held at positions[0]")


# -- prices: NaN, inf, negative, zero ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "-30000.0", "0", "0.0"])
def test_bad_price(write, value: str) -> None:
    path = write(base_book())
    text = path.read_text(encoding="utf-8")
    assert "BTC: 30000.0" in text
    path.write_text(text.replace("BTC: 30000.0", f"BTC: {value}"), encoding="utf-8")
    assert_bad_input(run(path), path, "prices", "BTC")


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_non_finite_amounts(write, value: str) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0]["qty"] = "QTY"
    book["venues"]["bin"]["accounts"]["main"]["collateral"]["USDT"] = "COLL"
    path = write(book)
    text = path.read_text(encoding="utf-8").replace("QTY", value).replace("COLL", value)
    path.write_text(text, encoding="utf-8")
    assert_bad_input(run(path), path, f"{POS}[0].qty", "venues.bin.accounts.main.collateral.USDT", "finite")


def test_library_reports_price_errors_per_asset(books: Books) -> None:
    book = base_book()
    book["prices"]["BTC"] = -1.0
    with pytest.raises(InputErrors) as info:
        books.load(book, {"rules.yaml": base_rules()})
    assert any("prices" in e.key and "BTC" in str(e) for e in info.value.errors)


# -- brackets ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("brackets", "what"),
    [
        ([{"cap": 50000, "mmr": 0.004, "max_leverage": 125}, {"cap": 40000, "mmr": 0.005, "max_leverage": 100},
          {"cap": None, "mmr": 0.01, "max_leverage": 50}], "cap"),
        ([{"cap": 50000, "mmr": 0.004, "max_leverage": 125}, {"cap": 50000, "mmr": 0.005, "max_leverage": 100}],
         "cap"),
        ([{"cap": 50000, "mmr": 0.006, "max_leverage": 125}, {"cap": 250000, "mmr": 0.005, "max_leverage": 100}],
         "mmr"),
        ([{"cap": None, "mmr": 0.004, "max_leverage": 125}, {"cap": 250000, "mmr": 0.005, "max_leverage": 100}],
         "cap null"),
    ],
    ids=["cap-descending", "cap-repeated", "mmr-descending", "null-not-last"],
)
def test_brackets_not_ascending(write, brackets: list[dict], what: str) -> None:
    rules = base_rules()
    rules["contracts"]["ETHUSDT"]["brackets"] = brackets
    path = write(base_book(), rules)
    rules_path = path.parent / "rules.yaml"
    assert_bad_input(run(path), rules_path, "contracts.ETHUSDT.brackets", what)


# -- margin modes ------------------------------------------------------------------------------------------------

def test_isolated_without_isolated_margin(write) -> None:
    book = base_book()
    del book["venues"]["bin"]["accounts"]["main"]["positions"][1]["isolated_margin"]
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[1].isolated_margin", "needs isolated_margin")


def test_isolated_not_allowed(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"].append(
        {"symbol": "XRPUSDT", "qty": 1000.0, "entry_price": 0.5, "margin_mode": "isolated", "isolated_margin": 50.0})
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[2].margin_mode", "XRPUSDT cannot be isolated")


@pytest.mark.parametrize("mode", ["cross", None])
def test_isolated_margin_on_cross_position(write, mode: str | None) -> None:
    book = base_book()
    pos = book["venues"]["bin"]["accounts"]["main"]["positions"][0]
    pos["isolated_margin"] = 500.0
    if mode is None:
        del pos["margin_mode"]  # cross by default
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].isolated_margin", "cross position")


def test_isolated_with_multi_asset_false(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["collateral"]["BTC"] = 1.0
    rules = base_rules(isolated_with_multi_asset=False)
    del rules["contracts"]["BTCUSD"]  # a USDⓈ-M-like venue: BTC is no settle asset there
    path = write(book, rules)
    assert_bad_input(run(path), path, "venues.bin.accounts.main.collateral", "ETHUSDT", "BTC", "Multi-Assets")


def test_isolated_with_multi_asset_false_allows_settle_only_pool(write) -> None:
    path = write(base_book(), base_rules(isolated_with_multi_asset=False))
    assert run(path).exit_code == 0


def test_collateral_not_accepted(write) -> None:
    book = base_book()
    book["prices"]["DOGE"] = 0.1
    book["venues"]["bin"]["accounts"]["main"]["collateral"]["DOGE"] = 1000.0
    path = write(book)
    assert_bad_input(run(path), path, "venues.bin.accounts.main.collateral.DOGE", "not accepted", "USDT")


# -- unknown and duplicated keys ---------------------------------------------------------------------------------

def test_unknown_key_top_level(write) -> None:
    book = base_book()
    book["walet"] = {"USDT": 1.0}
    path = write(book)
    assert_bad_input(run(path), path, "walet", "unknown key")


def test_unknown_key_in_position(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0]["entry"] = 1.0
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].entry", "unknown key")


def test_unknown_key_in_rules(write) -> None:
    rules = base_rules()
    rules["contracts"]["BTCUSDT"]["isolated_alowed"] = False
    rules["liquidation_fee"] = 0.01
    path = write(base_book(), rules)
    assert_bad_input(run(path), path.parent / "rules.yaml", "contracts.BTCUSDT.isolated_alowed",
                     "liquidation_fee", "unknown key")


def test_duplicated_account_id(write) -> None:
    path = write(base_book())
    text = path.read_text(encoding="utf-8")
    # repeat the account block under the same id
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "main:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) <= indent), len(lines))
    block = lines[start:end]
    lines[end:end] = block
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_bad_input(run(path), path, "main", "duplicated key", f"line {end + 1}")


def test_duplicated_price_key(write) -> None:
    path = write(base_book())
    text = path.read_text(encoding="utf-8").replace("  ETH: 2000.0\n", "  ETH: 2000.0\n  ETH: 2100.0\n")
    path.write_text(text, encoding="utf-8")
    assert_bad_input(run(path), path, "ETH", "duplicated key")


def test_duplicated_key_in_rules(write) -> None:
    path = write(base_book())
    rules_path = path.parent / "rules.yaml"
    text = rules_path.read_text(encoding="utf-8")
    rules_path.write_text(text.replace("source: test fixture\n", "source: test fixture\nsource: again\n"),
                          encoding="utf-8")
    assert_bad_input(run(path), rules_path, "source", "duplicated key")


# -- files and rule sets -----------------------------------------------------------------------------------------

def test_unknown_rule_set_name(write) -> None:
    book = base_book()
    book["venues"]["bin"]["rules"] = "binance-usdm-1999"
    path = write(book)
    assert_bad_input(run(path), path, "venues.bin.rules", "binance-usdm-1999", "unknown rule set")


def test_missing_rules_file(write) -> None:
    book = base_book()
    book["venues"]["bin"]["rules"] = "nothere.yaml"
    path = write(book)
    assert_bad_input(run(path), path, "venues.bin.rules", "nothere.yaml")


def test_missing_book_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "book.yaml"
    assert_bad_input(run(path), path, "file not found")
    with pytest.raises(InputError):
        load_book(path)


@pytest.mark.parametrize(
    "text",
    [
        "version: 1\nprices: {BTC: 1\nvenues: {}\n",
        "version: 1\nprices:\n  BTC: 1\n venues: x\n",
        "version: 1\n\tprices: {}\n",
    ],
    ids=["unclosed-flow", "bad-indent", "tab"],
)
def test_invalid_yaml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "book.yaml"
    path.write_text(text, encoding="utf-8")
    assert_bad_input(run(path), path, "invalid YAML", "line")


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n"], ids=["empty", "list", "scalar"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "book.yaml"
    path.write_text(text, encoding="utf-8")
    assert_bad_input(run(path), path, "mapping")


def test_book_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_bytes(b"version: 1\nprices: {BTC: 1\xff}\n")
    assert_bad_input(run(path), path, "cannot read", "utf-8")


def test_book_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.mkdir()
    assert_bad_input(run(path), path, "cannot read")


def test_rules_not_utf8(write) -> None:
    path = write(base_book())
    rules_path = path.parent / "rules.yaml"
    rules_path.write_bytes(rules_path.read_bytes() + b"# \xfe\n")
    assert_bad_input(run(path), rules_path, "cannot read")


def test_python_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text("version: 1\nprices: !!python/object:os.system {}\nvenues: {}\n", encoding="utf-8")
    assert_bad_input(run(path), path, "invalid YAML", "line 2")


def test_duplicated_key_in_json_syntax(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"  # JSON is YAML 1.2; the loader takes a JSON fast path for it
    path.write_text('{"version": 1, "prices": {"BTC": 1, "BTC": 2}, "venues": {}}', encoding="utf-8")
    assert_bad_input(run(path), path, "BTC", "duplicated key")


def test_invalid_yaml_in_rules(write) -> None:
    path = write(base_book())
    rules_path = path.parent / "rules.yaml"
    rules_path.write_text("version: 1\ncontracts: [\n", encoding="utf-8")
    assert_bad_input(run(path), rules_path, "invalid YAML")


# -- positions ---------------------------------------------------------------------------------------------------

def test_qty_zero(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0]["qty"] = 0
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].qty", "qty is 0")


@pytest.mark.parametrize("qty", [60000.0, -60000.0])  # 60,000 SOL × 20 = 1.2 M USDT > 1 M limit
def test_position_above_limit(write, qty: float) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"].append(
        {"symbol": "SOLUSDT", "qty": qty, "entry_price": 20.0})
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[2].qty", "position limit")


def test_position_at_limit_is_fine(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"].append(
        {"symbol": "SOLUSDT", "qty": 50000.0, "entry_price": 20.0})
    path = write(book)
    assert run(path).exit_code == 0


@pytest.mark.parametrize(("key", "value"), [("entry_price", 0.0), ("entry_price", -5.0), ("mark_price", 0.0),
                                             ("margin_mode", "portfolio"), ("leverage", 0.0), ("qty", "ten")])
def test_bad_position_values(write, key: str, value: Any) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0][key] = value
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].{key}")


def test_missing_required_keys(write) -> None:
    book = base_book()
    del book["venues"]["bin"]["accounts"]["main"]["positions"][0]["entry_price"]
    del book["version"]
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].entry_price", "version", "required")


# -- several problems at once ------------------------------------------------------------------------------------

def test_several_schema_errors_reported_at_once(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["positions"][0]["qty"] = 0
    book["venues"]["bin"]["accounts"]["main"]["positions"][1]["lev"] = 3
    path = write(book)
    assert_bad_input(run(path), path, f"{POS}[0].qty", f"{POS}[1].lev")


def test_several_cross_check_errors_reported_at_once(write) -> None:
    book = base_book()
    positions = book["venues"]["bin"]["accounts"]["main"]["positions"]
    positions[0]["symbol"] = "BTCUSDX"
    positions[1]["margin_mode"] = "cross"  # isolated_margin left on a cross position
    book["venues"]["bin"]["accounts"]["main"]["collateral"]["DOGE"] = 5.0  # no price, not accepted
    path = write(book)
    text = assert_bad_input(run(path), path, f"{POS}[0].symbol", f"{POS}[1].isolated_margin", "prices.DOGE",
                            "venues.bin.accounts.main.collateral.DOGE")
    with pytest.raises(InputErrors) as info:
        load_book(path)
    assert len(info.value.errors) == 4, text


def test_errors_in_two_rules_files_reported_at_once(write) -> None:
    book = base_book()
    book["venues"]["other"] = copy.deepcopy(book["venues"]["bin"])
    book["venues"]["other"]["rules"] = "rules2.yaml"
    rules = base_rules()
    rules["contracts"]["BTCUSDT"]["kind"] = "perpetual"
    rules2 = base_rules()
    rules2["contracts"]["ETHUSDT"]["contract_size"] = -1
    path = write(book, rules, {"rules2.yaml": rules2})
    assert_bad_input(run(path), path.parent / "rules.yaml", "contracts.BTCUSDT.kind", "contracts.ETHUSDT.contract_size",
                     str(path.parent / "rules2.yaml"))


# -- happy path: the JSON document of spec §4 --------------------------------------------------------------------

ACCOUNT_KEYS = {"venue", "account", "rules", "equity", "maintenance_margin", "initial_margin", "margin_ratio",
                "available", "positions"}
POSITION_KEYS = {"symbol", "settle", "margin_mode", "qty", "notional", "maintenance_margin",
                 "maintenance_margin_settle", "unrealized_pnl", "isolated_margin", "liquidation_price",
                 "liquidatable_now"}


def test_margin_json_has_exactly_the_spec_keys(write) -> None:
    book = base_book()
    book["venues"]["bin"]["accounts"]["main"]["collateral"]["BTC"] = 0.5
    book["venues"]["coin"] = {"rules": "rules.yaml", "accounts": {"inv": {
        "collateral": {"BTC": 2.0},
        "positions": [{"symbol": "BTCUSD", "qty": -300, "entry_price": 31000.0, "mark_price": 30050.0}]}}}
    path = write(book)
    result = CliRunner().invoke(main, ["margin", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"version", "accounts"}
    assert doc["version"] == 1
    assert [(a["venue"], a["account"]) for a in doc["accounts"]] == [("bin", "main"), ("coin", "inv")]
    for acc in doc["accounts"]:
        assert set(acc) == ACCOUNT_KEYS
        assert acc["rules"] == "rules.yaml"
        for key in ACCOUNT_KEYS - {"venue", "account", "rules", "positions", "margin_ratio"}:
            assert isinstance(acc[key], float)
        for pos in acc["positions"]:
            assert set(pos) == POSITION_KEYS
            assert isinstance(pos["liquidatable_now"], bool)
            assert pos["margin_mode"] in ("cross", "isolated")
            assert (pos["isolated_margin"] is None) == (pos["margin_mode"] == "cross")
    main_positions = {p["symbol"]: p for p in doc["accounts"][0]["positions"]}
    assert set(main_positions) == {"BTCUSDT", "ETHUSDT"}
    assert main_positions["ETHUSDT"]["isolated_margin"] == 2000.0
    assert main_positions["BTCUSDT"]["notional"] == pytest.approx(1.5 * 30000.0)
    inv = doc["accounts"][1]["positions"][0]
    assert inv["settle"] == "BTC"
    assert inv["notional"] == pytest.approx(300 * 100 / 30050.0 * 30000.0)


def test_rules_file_round_trip_through_dump_yaml(tmp_path: Path) -> None:
    """Sanity check of the fixture helpers this file relies on."""
    path = dump_yaml(base_rules(), tmp_path / "rules.yaml")
    assert "BTCUSDT" in path.read_text(encoding="utf-8")


def test_every_non_positive_price_reported_with_its_key(write) -> None:
    book = base_book()
    book["prices"]["BTC"] = 0.0
    book["prices"]["ETH"] = -2.0
    path = write(book)
    assert_bad_input(run(path), path, "prices.BTC", "prices.ETH")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_overflowing_position_is_bad_input(write) -> None:
    book = base_book()
    _acct(book)["positions"][0]["qty"] = 1e307  # notional 3e311 USDT: overflows to inf
    path = write(book)
    assert_bad_input(run(path, "--json"), path, f"{POS}[0]")
