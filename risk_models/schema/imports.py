"""The account map of `pmopt import ccxt --accounts MAP.yaml`: several saved ccxt accounts into one book."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import Strict


class ImportAccount(Strict):
    """One account's saved ccxt output; paths are relative to the map file."""

    venue: str = Field(min_length=1)
    """The book's venue id; also the ccxt exchange id unless ``exchange`` is given."""
    account: str = Field(default="main", min_length=1)
    exchange: str | None = Field(default=None, min_length=1)
    rules: str | None = Field(default=None, min_length=1)
    """A built-in rule-set name or a rules file; default: the exchange's usual built-in set."""
    tiers: str | None = Field(default=None, min_length=1)
    """Instead of ``rules``: a saved ``fetch_leverage_tiers()`` output, turned into a rules file."""
    markets: str | None = Field(default=None, min_length=1)
    liquidation_fee_rate: float | None = Field(default=None, ge=0, lt=1)
    max_leverage: float | None = Field(default=None, gt=0)
    default_margin_mode: Literal["cross", "isolated"] | None = None
    """For positions whose ``marginMode`` ccxt leaves empty (Bybit)."""
    positions: str = Field(min_length=1)
    balance: str = Field(min_length=1)
    symbols: dict[str, str] = Field(default_factory=dict)
    """ccxt symbol → the rule set's contract id, for symbols the automatic mapping cannot resolve."""


class ImportMap(Strict):
    version: Literal[1]
    prices: str | None = Field(default=None, min_length=1)
    """Optional CSV or Parquet of daily USD closes (its last quote per asset is used)."""
    accounts: list[ImportAccount] = Field(min_length=1)
