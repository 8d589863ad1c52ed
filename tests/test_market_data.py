"""Price loading, validation and window selection: toy files with hand-checked numbers, and the shipped data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk_models.errors import InputError
from risk_models.market_data import (
    MAX_FILL_DAYS,
    PriceHistory,
    default_prices,
    load_prices,
)

SHIPPED_CSV = Path(__file__).resolve().parents[1] / "risk_models" / "data" / "crypto_daily_close_usd.csv"


def write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toy_history(n_days: int = 40, start: str = "2024-01-01", **columns: list[float] | np.ndarray) -> PriceHistory:
    index = pd.date_range(start, periods=n_days, freq="D")
    data = columns or {"BTC": 100.0 * 1.01 ** np.arange(n_days)}
    return PriceHistory(pd.DataFrame(data, index=index), "toy")


# == loading ========================================================================================================

def test_load_csv_reads_wide_file_and_sorts_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "date,BTC,ETH\n2024-01-02,110,\n2024-01-01,100,10.5\n2024-01-03,121,11\n")
    ph = load_prices(path)
    assert ph.source == str(path)
    assert ph.assets == ("BTC", "ETH")
    assert list(ph.prices.index.strftime("%Y-%m-%d")) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert ph.prices["BTC"].tolist() == [100.0, 110.0, 121.0]
    assert np.isnan(ph.prices.loc["2024-01-02", "ETH"])          # empty cell = no quote


def test_load_csv_date_column_may_be_first_and_named_otherwise(tmp_path: Path) -> None:
    ph = load_prices(write(tmp_path, "Day,BTC\n2024-01-01,1\n2024-01-02,2\n"))
    assert ph.prices["BTC"].tolist() == [1.0, 2.0]
    ph = load_prices(write(tmp_path, "BTC,Date\n1,2024-01-01\n2,2024-01-02\n", "b.csv"))
    assert ph.assets == ("BTC",)


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("date,BTC\n2024-01-01,100\n2024-01-02,-5\n", "BTC", "-5.0 on 2024-01-02"),
    ("date,BTC\n2024-01-01,100\n2024-01-02,0\n", "BTC", "0.0 on 2024-01-02"),
    ("date,BTC\n2024-01-01,inf\n2024-01-02,1\n", "BTC", "inf on 2024-01-01"),
    ("date,BTC\n2024-01-01,100\n2024-01-01,101\n", "2024-01-01", "duplicated date (line 2, line 3)"),
    ("date,BTC\n2024-01-01,100\n2024-13-45,101\n", "date (line 3)", "unparseable date '2024-13-45'"),
    ("date,BTC\n2024-01-01,100\n,101\n", "date (line 3)", "unparseable date"),
    ("date,BTC\n2024-01-01,100\n2024-01-02T05:00:00Z,101\n", "date (line 3)", "not a whole UTC day"),
    ("date,BTC,ETH\n2024-01-01,100,1\n2024-01-02,1o1,x\n", "BTC", "non-numeric value '1o1' on 2024-01-02 (line 3)"),
    ("date,BTC,ETH\n2024-01-01,100,x\n2024-01-02,101,y\n", "ETH", "'x' on 2024-01-01 (line 2) and 1 more"),
    ("date,BTC,BTC\n2024-01-01,1,2\n", "BTC", "duplicated column"),
    ("date,BTC\n", "", "no data rows"),
    ("date\n2024-01-01\n", "", "no asset columns"),
    ("", "", "the file is empty"),
    ("date,BTC\n2024-01-01,1\n2024-01-02,2,3\n", "", "Expected 2 fields in line 3, saw 3"),
])
def test_load_csv_rejects_bad_files_naming_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_prices(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert fragment in err.value.reason
    assert err.value.remedy
    assert str(path) in str(err.value)


def test_load_rejects_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such price file"):
        load_prices(tmp_path / "absent.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"date,BTC\n2024-01-01,1\xe9\n")
    with pytest.raises(InputError, match="cannot parse the CSV"):
        load_prices(latin)
    with pytest.raises(InputError, match=r"unsupported price file type '\.xlsx'"):
        load_prices(write(tmp_path, "x", "prices.xlsx"))


def test_load_parquet_with_date_column_or_index(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": ["2024-01-02", "2024-01-01"], "BTC": [110.0, 100.0], "ETH": [None, 10.0]})
    frame.to_parquet(tmp_path / "a.parquet", index=False)
    ph = load_prices(tmp_path / "a.parquet")
    assert ph.prices["BTC"].tolist() == [100.0, 110.0]
    assert np.isnan(ph.prices["ETH"].iloc[1])
    indexed = frame.assign(date=pd.to_datetime(frame["date"], utc=True)).set_index("date")
    indexed.to_parquet(tmp_path / "b.parquet")
    assert load_prices(tmp_path / "b.parquet").prices.equals(ph.prices)
    frame.drop(columns="date").to_parquet(tmp_path / "c.parquet")
    with pytest.raises(InputError, match="no date column and no date index"):
        load_prices(tmp_path / "c.parquet")
    frame.assign(BTC=[1.0, -1.0]).to_parquet(tmp_path / "d.parquet", index=False)
    with pytest.raises(InputError, match=r"price -1.0 on 2024-01-01") as err:
        load_prices(tmp_path / "d.parquet")
    assert err.value.key == "BTC"


def test_price_history_validates_frames() -> None:
    index = pd.to_datetime(["2024-01-01", "2024-01-01"])
    with pytest.raises(InputError, match="duplicated date"):
        PriceHistory(pd.DataFrame({"BTC": [1.0, 2.0]}, index=index), "frame")
    with pytest.raises(InputError, match="not a finite positive number") as err:
        PriceHistory(pd.DataFrame({"BTC": [1.0, np.inf]}, index=pd.date_range("2024-01-01", periods=2)), "frame")
    assert err.value.key == "BTC"


# == windows ========================================================================================================

def test_window_takes_days_returns_ending_at_end() -> None:
    ph = toy_history(60)
    w = ph.window(["BTC"], end="2024-02-15T08:00:00Z", days=30)     # a time of day is truncated to its date
    assert w.n_returns == 30
    assert (w.start, w.end) == (pd.Timestamp("2024-01-16"), pd.Timestamp("2024-02-15"))
    np.testing.assert_allclose(w.simple_returns(), 0.01, rtol=1e-12)
    np.testing.assert_allclose(w.simple_returns(2), 1.01**2 - 1, rtol=1e-12)
    assert w.return_labels(2)[0] == "2024-01-18"
    assert ph.window(["BTC"], days=30).end == pd.Timestamp("2024-02-29")   # default end: the last date


def test_window_fills_short_gaps_and_records_them() -> None:
    btc = 100.0 * 1.01 ** np.arange(40)
    btc[[10, 11, 12, 20]] = np.nan
    ph = toy_history(BTC=btc, ETH=np.full(40, 5.0))
    w = ph.window(["BTC", "ETH"], days=35)
    assert w.filled == {"BTC": ("2024-01-11", "2024-01-12", "2024-01-13", "2024-01-21")}
    assert w.prices.loc["2024-01-13", "BTC"] == btc[9]
    assert w.prices.loc["2024-01-21", "BTC"] == btc[19]
    assert not w.prices.isna().to_numpy().any()
    assert MAX_FILL_DAYS == 3


def test_window_treats_missing_rows_as_gaps() -> None:
    index = pd.date_range("2024-01-01", periods=40, freq="D").delete([5, 6])
    ph = PriceHistory(pd.DataFrame({"BTC": np.arange(1.0, 39.0)}, index=index), "toy")
    w = ph.window(["BTC"], days=35)
    assert w.filled == {"BTC": ("2024-01-06", "2024-01-07")}
    assert w.prices.loc["2024-01-07", "BTC"] == 5.0


def test_window_rejects_long_gap_naming_asset_and_dates() -> None:
    btc = np.linspace(100, 140, 40)
    btc[10:14] = np.nan
    with pytest.raises(InputError) as err:
        toy_history(BTC=btc).window(["BTC"], days=35)
    assert err.value.key == "BTC"
    assert "4 days without a quote from 2024-01-11 to 2024-01-14" in err.value.reason
    assert "shorten window_days to at most 25" in err.value.remedy
    assert toy_history(BTC=btc).window(["BTC"], days=25, min_returns=1).n_returns == 25


def test_window_rejects_late_start_short_window_unknown_and_stale_assets() -> None:
    late = np.r_[np.full(10, np.nan), np.linspace(1, 2, 30)]
    ph = toy_history(BTC=np.linspace(100, 140, 40), SOL=late)
    with pytest.raises(InputError) as err:
        ph.window(["BTC", "SOL"], days=35)
    assert (err.value.key, err.value.remedy) == ("SOL", "shorten window_days to at most 29")
    assert "history starts 2024-01-11" in err.value.reason
    with pytest.raises(InputError, match="too short") as err:
        ph.window(["BTC"], days=29)
    assert err.value.key == "window_days"
    with pytest.raises(InputError, match="no price column") as err:
        ph.window(["ETH"], days=30)
    with pytest.raises(InputError, match="last quote on 2024-02-09"):
        ph.window(["BTC"], end="2024-02-10", days=30)
    with pytest.raises(InputError, match="asset named twice"):
        ph.window(["BTC", "BTC"], days=30)


def test_pegged_assets_need_no_data_and_return_zero() -> None:
    ph = toy_history(BTC=np.linspace(100, 140, 40), USDT=np.linspace(0.9, 1.1, 40))
    w = ph.window(["BTC", "USDT", "USDC"], days=30)
    assert w.pegged == ("USDT", "USDC")
    assert np.all(w.prices[["USDT", "USDC"]].to_numpy() == 1.0)
    assert np.all(w.simple_returns()[:, 1:] == 0.0)
    unpegged = ph.window(["USDT"], days=30, pegged=())
    assert unpegged.simple_returns()[0, 0] == pytest.approx(unpegged.prices["USDT"].iloc[1] /
                                                           unpegged.prices["USDT"].iloc[0] - 1)


# == the shipped data ===============================================================================================

def test_default_prices_is_the_shipped_file() -> None:
    ph = default_prices()
    assert ph.source == "embedded crypto_daily_close_usd.csv"
    assert ph.assets == ("BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "LINK", "LTC", "DOT", "BCH",
                         "TRX", "USDT", "USDC")
    assert (ph.first_date, ph.last_date) == (pd.Timestamp("2014-09-17"), pd.Timestamp("2025-02-20"))
    assert ph.prices.equals(load_prices(SHIPPED_CSV).prices)


def test_shipped_btc_covid_crash_return() -> None:
    w = default_prices().window(["BTC"], end="2020-03-12", days=30)
    assert w.prices["BTC"].iloc[-2:].tolist() == [7911.4302, 4970.7881]       # the CSV's closes
    assert w.simple_returns()[-1, 0] == pytest.approx(-0.3716953857, abs=1e-6)


def test_shipped_window_to_2025_02_20_with_pegged_stablecoins() -> None:
    w = default_prices().window(["BTC", "ETH", "USDT", "USDC"], end="2025-02-20", days=1095)
    assert (w.start, w.end, w.n_returns) == (pd.Timestamp("2022-02-21"), pd.Timestamp("2025-02-20"), 1095)
    assert w.filled == {}
    r = w.simple_returns()
    assert np.all(r[:, 2:] == 0.0)
    assert np.all(np.isfinite(r)) and np.all(r[:, :2] != 0.0)


def test_shipped_unpegged_usdt_after_its_last_quote_names_it() -> None:
    with pytest.raises(InputError) as err:
        default_prices().window(["BTC", "USDT"], end="2025-02-20", days=365, pegged=("USDC",))
    assert err.value.key == "USDT"
    assert "last quote on 2025-02-11" in err.value.reason
    assert "as_of to 2025-02-11" in err.value.remedy
    w = default_prices().window(["BTC", "USDT"], end="2025-02-11", days=365, pegged=())
    assert np.any(w.simple_returns()[:, 1] != 0.0)


def test_shipped_avax_gap_is_named_and_short_gaps_are_recorded() -> None:
    ph = default_prices()
    with pytest.raises(InputError) as err:
        ph.window(["BTC", "AVAX"], end="2021-03-01", days=200)
    assert err.value.key == "AVAX"
    assert "69 days without a quote from 2020-07-15 to 2020-09-21" in err.value.reason
    assert "shorten window_days to at most 160" in err.value.remedy
    assert ph.window(["AVAX"], end="2021-03-01", days=160).filled == {}
    holed = ph.prices.copy()
    holed.loc[["2024-01-10", "2024-01-11"], "BTC"] = np.nan
    w = PriceHistory(holed, "holed").window(["BTC", "AVAX"], end="2025-02-20", days=500)
    assert w.filled == {"BTC": ("2024-01-10", "2024-01-11")}
    assert w.prices.loc["2024-01-11", "BTC"] == ph.prices.loc["2024-01-09", "BTC"]
