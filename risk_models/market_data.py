"""Daily USD closing prices: loading, validation and the price window behind a scenario set.

Rules (every one of them is visible in the result; nothing is dropped silently):

- A price file is wide: one row per UTC date, one column per asset.  The date column is the one named ``date``
  (any case), else the first column (CSV) or the index (Parquet).  Dates must be ISO-8601 days (a time of day other
  than midnight UTC is rejected), unique; rows out of order are sorted (the only silent change).  An empty cell
  means "no quote"; any other cell must be a finite number > 0.
- :meth:`PriceHistory.window` takes ``days`` daily returns ending at ``end``: the calendar days ``end − days …
  end`` (crypto trades every day; a date missing from the file is a gap like an empty cell).
  * Pegged assets (default USDT, USDC) are held at the constant price 1.0 (returns exactly 0) and need no data.
  * An interior gap of at most ``max_fill_days`` (default :data:`MAX_FILL_DAYS` = 3) consecutive days is filled
    with the last quote before it; every filled date is listed in :attr:`PriceWindow.filled`.  A longer gap that
    touches the window is an error naming the asset and the gap's first and last dates.
  * An asset whose first quote is after the window start, or whose last quote is before ``end``, is an error
    naming that date (a missing last quote is never filled: the newest price must be real).
  * Fewer than ``min_returns`` (default :data:`MIN_RETURNS` = 30) returns is an error.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

DEFAULT_PEGGED: tuple[str, ...] = ("USDT", "USDC")
"""Assets held at a constant price in generated scenarios unless the policy says otherwise."""
MAX_FILL_DAYS = 3
"""Longest run of missing daily quotes that is forward-filled inside a window."""
MIN_RETURNS = 30
"""Fewest daily returns a window may hold."""
DEFAULT_WINDOW_DAYS = 1095
"""Default look-back: three years of daily returns."""
DEFAULT_DATA_FILE = "crypto_daily_close_usd.csv"

DateLike = str | date | datetime | pd.Timestamp


def iso(day: pd.Timestamp) -> str:
    """``YYYY-MM-DD`` of a timestamp."""
    return day.strftime("%Y-%m-%d")


def to_day(value: DateLike, *, file: str = "", key: str = "end") -> pd.Timestamp:
    """A date, datetime or ISO string as a tz-naive UTC day (a time of day is truncated to its date)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InputError(file, key, f"cannot read {value!r} as a date ({exc})", "write an ISO date, e.g. 2025-02-20"
                         ) from None
    if ts is pd.NaT:
        raise InputError(file, key, "the date is empty", "write an ISO date, e.g. 2025-02-20")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


@dataclass(frozen=True)
class PriceHistory:
    """Daily USD closes: ``prices`` indexed by UTC day (tz-naive, ascending, unique), one float column per asset.

    NaN = no quote.  Construction validates and normalizes a numeric frame (copied, cast to float, sorted by date);
    treat ``prices`` as read-only.  ``source`` names where the data came from (used in every error message).
    """

    prices: pd.DataFrame
    source: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "prices", _validated(self.prices, self.source))

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self.prices.columns)

    @property
    def first_date(self) -> pd.Timestamp:
        return self.prices.index[0]

    @property
    def last_date(self) -> pd.Timestamp:
        return self.prices.index[-1]

    def window(self, assets: Sequence[str], end: DateLike | None = None, days: int = DEFAULT_WINDOW_DAYS,
               pegged: Sequence[str] = DEFAULT_PEGGED, *, max_fill_days: int = MAX_FILL_DAYS,
               min_returns: int = MIN_RETURNS) -> PriceWindow:
        """The ``days + 1`` daily prices (``days`` returns) of ``assets`` ending at ``end`` (default: last date).

        See the module docstring for the gap rules.  Raises :class:`InputError` naming the asset and the date.
        """
        file = self.source
        assets = _unique_assets(assets, file)
        pegged_set = set(pegged)
        if days < max(min_returns, 1):
            raise InputError(file, "window_days", f"a window of {days} daily returns is too short",
                             f"use at least {max(min_returns, 1)} days")
        end_day = self.last_date if end is None else to_day(end, file=file)
        start = end_day - pd.Timedelta(days=days)
        calendar = pd.date_range(start, end_day, freq="D")
        columns: dict[str, np.ndarray] = {}
        filled: dict[str, tuple[str, ...]] = {}
        for asset in assets:
            if asset in pegged_set:
                columns[asset] = np.ones(len(calendar))
                continue
            series, fills = self._asset_window(asset, start, end_day, days, max_fill_days)
            columns[asset] = series
            if fills:
                filled[asset] = fills
        frame = pd.DataFrame(columns, index=calendar, columns=list(assets))
        frame.index.name = "date"
        return PriceWindow(frame, tuple(a for a in assets if a in pegged_set), filled, self.source)

    def _asset_window(self, asset: str, start: pd.Timestamp, end: pd.Timestamp, days: int, max_fill: int
                      ) -> tuple[np.ndarray, tuple[str, ...]]:
        """One non-pegged asset's window prices (gaps filled per the rules) and the filled dates."""
        file = self.source
        if asset not in self.prices.columns:
            raise InputError(file, asset, "no price column for this asset",
                             f"add a {asset} column to the price file, or list {asset} under risk_model.pegged "
                             f"if it is held at a constant price (columns: {', '.join(self.assets)})")
        quotes = self.prices[asset].dropna()
        if quotes.empty:
            raise InputError(file, asset, "the column holds no quotes",
                             f"add prices, or list {asset} under risk_model.pegged")
        first, last = quotes.index[0], quotes.index[-1]
        if last < end:
            raise InputError(file, asset, f"last quote on {iso(last)}, before the window end {iso(end)}",
                             f"set as_of to {iso(last)} or earlier, add the missing prices, or list {asset} "
                             "under risk_model.pegged if it is held at a constant price")
        full = self.prices[asset].reindex(pd.date_range(first, end, freq="D"))
        missing = full.isna().to_numpy()
        long_gaps = [(a, b) for a, b in _runs(full.index, missing) if (b - a).days + 1 > max_fill]
        # the longest window that avoids every long gap starts the day after the last one
        usable = (end - (long_gaps[-1][1] + pd.Timedelta(days=1) if long_gaps else first)).days
        remedy = f"shorten window_days to at most {usable}" if usable >= 1 else "move as_of later or remove the asset"
        if first > start:
            gaps = "".join(f"; no quotes {iso(a)}..{iso(b)}" for a, b in long_gaps)
            raise InputError(file, asset, f"history starts {iso(first)}, after the window start {iso(start)} "
                             f"({days} returns ending {iso(end)}){gaps}", remedy)
        for gap_first, gap_last in long_gaps:
            if gap_last >= start:
                length = (gap_last - gap_first).days + 1
                raise InputError(file, asset, f"{length} days without a quote from {iso(gap_first)} to "
                                 f"{iso(gap_last)} inside the window {iso(start)}..{iso(end)} (at most "
                                 f"{max_fill} are filled)", f"add the missing prices, or {remedy}")
        full = full.ffill()
        window = full.loc[start:end]
        fills = tuple(iso(d) for d, m in zip(full.index, missing, strict=True) if m and start <= d)
        return window.to_numpy(dtype=float), fills


@dataclass(frozen=True)
class PriceWindow:
    """The prices behind one scenario set: ``prices`` has ``n_returns + 1`` consecutive days, no NaN.

    ``pegged`` assets are at the constant price 1.0; ``filled`` lists, per asset, the ISO dates whose price is a
    forward-filled earlier quote.  ``source`` is the data's origin.
    """

    prices: pd.DataFrame
    pegged: tuple[str, ...] = ()
    filled: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(self.prices.columns)

    @property
    def start(self) -> pd.Timestamp:
        """Date of the first price (the day before the first return)."""
        return self.prices.index[0]

    @property
    def end(self) -> pd.Timestamp:
        return self.prices.index[-1]

    @property
    def n_returns(self) -> int:
        return len(self.prices) - 1

    def simple_returns(self, horizon_days: int = 1) -> np.ndarray:
        """Overlapping ``horizon_days`` simple returns ``P[t+h] / P[t] − 1``, shape (n_returns − h + 1, A)."""
        p = self.prices.to_numpy(dtype=float)
        h = horizon_days
        return p[h:] / p[:-h] - 1.0

    def log_returns(self) -> np.ndarray:
        """Daily log returns ``ln(P[t+1] / P[t])``, shape (n_returns, A)."""
        p = self.prices.to_numpy(dtype=float)
        return np.log(p[1:] / p[:-1])

    def return_labels(self, horizon_days: int = 1) -> tuple[str, ...]:
        """ISO end date of each overlapping ``horizon_days`` return."""
        return tuple(iso(d) for d in self.prices.index[horizon_days:])


def load_prices(path: str | Path) -> PriceHistory:
    """Read a wide CSV or Parquet file of daily USD closes (see the module docstring for the format)."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise InputError(file, "", "no such price file", "check the path (CSV or Parquet of daily USD closes)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        dates, values, date_key, row_names = _read_csv(path, file)
    elif suffix in (".parquet", ".pq"):
        dates, values, date_key, row_names = _read_parquet(path, file)
    else:
        raise InputError(file, "", f"unsupported price file type {suffix!r}", "use a .csv or .parquet file")
    return _from_raw(dates, values, date_key, row_names, file)


@cache
def default_prices() -> PriceHistory:
    """The embedded daily closes (Yahoo Finance, 15 assets, 2014-09-17..2025-02-20; USDT/USDC end 2025-02-11)."""
    ref = resources.files("risk_models").joinpath("data", DEFAULT_DATA_FILE)
    with resources.as_file(ref) as path:
        history = load_prices(path)
    return PriceHistory(history.prices, f"embedded {DEFAULT_DATA_FILE}")


# -- parsing -------------------------------------------------------------------------------------------------------

def _read_csv(path: Path, file: str) -> tuple[pd.Series, pd.DataFrame, str, list[str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh), None)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        header = None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(file, "", f"cannot parse the CSV ({str(exc).strip()})",
                         "write UTF-8 text: one header row, then one row per day with one cell per column") from None
    if not header:
        raise InputError(file, "", "the file is empty", "write a header row: date,BTC,ETH,...")
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(file, name, "duplicated column", "keep one column per asset")
        seen.add(name)
    raw.columns = header
    date_col = next((c for c in header if c.lower() == "date"), header[0])
    values = raw.drop(columns=[date_col])
    rows = [f"line {i + 2}" for i in range(len(raw))]
    return raw[date_col], values, date_col, rows


def _read_parquet(path: Path, file: str) -> tuple[pd.Series, pd.DataFrame, str, list[str]]:
    try:
        raw = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputError(file, "", f"cannot read the Parquet file ({exc})", "write a valid Parquet table") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    date_col = next((c for c in raw.columns if c.lower() == "date"), None)
    if date_col is not None:
        dates, values = raw[date_col].reset_index(drop=True), raw.drop(columns=[date_col])
    elif isinstance(raw.index, pd.RangeIndex):
        raise InputError(file, "date", "no date column and no date index",
                         "name the date column 'date' or store the dates as the index")
    else:
        date_col = str(raw.index.name or "index")
        dates, values = pd.Series(raw.index, name=date_col), raw
    values = values.reset_index(drop=True)
    return dates, values, date_col, [f"row {i}" for i in range(len(raw))]


def _from_raw(dates: pd.Series, values: pd.DataFrame, date_key: str, rows: list[str], file: str) -> PriceHistory:
    """Parse dates and numbers, reporting the first offending cell (and how many more) with its row and column."""
    if values.shape[1] == 0:
        raise InputError(file, "", "no asset columns", "add one column of USD closes per asset")
    if len(dates) == 0:
        raise InputError(file, "", "no data rows", "add one row per day")
    for name in values.columns:
        if not name or name.startswith("Unnamed:"):
            raise InputError(file, name or "(empty)", "a column has no asset name", "name every column")
    parsed = _parse_dates(dates, date_key, rows, file)
    numbers = {}
    for name in values.columns:
        col = values[name]
        text = col.astype(str).str.strip() if col.dtype == object or pd.api.types.is_string_dtype(col) else None
        empty = text.eq("") | col.isna() if text is not None else col.isna()
        num = pd.to_numeric(text.where(~empty) if text is not None else col, errors="coerce")
        bad = (num.isna() & ~empty).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            more = int(bad.sum()) - 1
            raise InputError(file, name, f"non-numeric value {col.iloc[i]!r} on {iso(parsed[i])} ({rows[i]})"
                             + (f" and {more} more" if more else ""),
                             "write plain numbers (USD per unit); leave the cell empty when there is no quote")
        numbers[name] = num.to_numpy(dtype=float)
    frame = pd.DataFrame(numbers, index=parsed, columns=list(values.columns))
    frame.index.name = "date"
    return PriceHistory(frame, file)


def _parse_dates(dates: pd.Series, key: str, rows: list[str], file: str) -> pd.DatetimeIndex:
    text = dates.astype(str).str.strip()
    if pd.api.types.is_datetime64_any_dtype(dates):
        parsed = pd.to_datetime(dates, utc=True)
    else:
        parsed = pd.to_datetime(text.where(text.ne("")), errors="coerce", utc=True, format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(file, f"{key} ({rows[i]})", f"unparseable date {dates.iloc[i]!r}",
                         "write ISO dates (YYYY-MM-DD), one row per UTC day")
    index = pd.DatetimeIndex(parsed).tz_convert("UTC").tz_localize(None)
    off = index != index.normalize()
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InputError(file, f"{key} ({rows[i]})", f"{dates.iloc[i]!r} is not a whole UTC day",
                         "daily closes take one row per UTC date without a time of day")
    dup = index.duplicated(keep=False)
    if dup.any():
        day = index[dup][0]
        where = [rows[i] for i in np.flatnonzero(index == day)]
        raise InputError(file, iso(day), f"duplicated date ({', '.join(where)})", "keep one row per day")
    return index


def _validated(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Copy of ``frame`` with float columns and a sorted tz-naive daily index; raises InputError otherwise."""
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
        raise InputError(source, "", "prices must be a DataFrame indexed by date", "use load_prices()")
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise InputError(source, "", "no prices", "give at least one asset column and one row")
    _unique_assets(frame.columns, source)
    index = frame.index
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    if (index != index.normalize()).any():
        raise InputError(source, "date", "index holds times of day", "index daily closes by UTC date")
    if index.duplicated().any():
        raise InputError(source, iso(index[index.duplicated()][0]), "duplicated date", "keep one row per day")
    out = frame.copy()
    out.index = index
    for name in out.columns:
        if not pd.api.types.is_numeric_dtype(out[name]):
            raise InputError(source, str(name), "non-numeric column", "convert it to float USD prices")
    out = out.astype(float).sort_index()
    values = out.to_numpy()
    bad = ~np.isnan(values) & (~np.isfinite(values) | (values <= 0))
    if bad.any():
        r, c = (int(x[0]) for x in np.nonzero(bad))
        more = int(bad.sum()) - 1
        raise InputError(source, str(out.columns[c]), f"price {float(values[r, c])!r} on {iso(out.index[r])} is not a "
                         "finite positive number" + (f" (and {more} more)" if more else ""),
                         "fix the price or leave the cell empty when there is no quote")
    out.index.name = "date"
    return out


def _unique_assets(assets: Sequence[str] | pd.Index, file: str) -> tuple[str, ...]:
    names = tuple(str(a) for a in assets)
    if not names:
        raise InputError(file, "", "no assets given", "name at least one asset")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(file, name, "asset named twice", "name each asset once")
        seen.add(name)
    return names


def _runs(index: pd.DatetimeIndex, mask: np.ndarray) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(first, last) dates of each run of True in ``mask``."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [(index[a], index[b]) for a, b in zip(starts, stops, strict=True)]


def read_adv(path: str | Path) -> dict[str, float]:
    """Average daily volumes, USD: a CSV with columns ``asset,adv_usd`` (one row per asset, positive values)."""
    file = str(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(file, "", f"cannot read: {exc}", "give a CSV with header asset,adv_usd") from None
    if list(frame.columns) != ["asset", "adv_usd"]:
        raise InputError(file, "header", f"columns {list(frame.columns)}", "the header must be exactly asset,adv_usd")
    out: dict[str, float] = {}
    for i, (asset, adv) in enumerate(zip(frame["asset"], frame["adv_usd"], strict=True)):
        key = f"line {i + 2}"
        value = pd.to_numeric(adv, errors="coerce")
        if not isinstance(asset, str) or asset in out:
            raise InputError(file, key, f"asset {asset!r} is missing or repeated", "one row per asset")
        if not (np.isfinite(value) and value > 0):
            raise InputError(file, key, f"adv_usd {adv!r} of {asset} must be a positive number")
        out[asset] = float(value)
    return out
