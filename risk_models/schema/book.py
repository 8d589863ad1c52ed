"""The book file (spec §1): what the desk holds now.  Amounts in asset units, prices in USD."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .common import Strict


class Position(Strict):
    """One position (one-way mode).  ``qty`` signed: linear in base units, inverse in contracts."""

    symbol: str = Field(min_length=1)
    qty: float
    entry_price: float = Field(gt=0)
    mark_price: float | None = Field(default=None, gt=0)
    margin_mode: Literal["cross", "isolated"] = "cross"
    isolated_margin: float | None = Field(default=None, ge=0)
    leverage: float | None = Field(default=None, gt=0)
    pinned: bool = False

    @field_validator("qty")
    @classmethod
    def _nonzero(cls, qty: float) -> float:
        if qty == 0:
            raise ValueError("qty is 0: remove the position or give its signed size")
        return qty


class Account(Strict):
    collateral: dict[str, float] = Field(default_factory=dict)
    positions: list[Position] = Field(default_factory=list)


class Venue(Strict):
    rules: str = Field(min_length=1)
    accounts: dict[str, Account] = Field(min_length=1)


class Book(Strict):
    version: Literal[1]
    as_of: str | None = None
    prices: dict[str, Annotated[float, Field(gt=0)]]
    """USD per unit of each asset; every price must be positive and finite."""
    venues: dict[str, Venue] = Field(min_length=1)
    wallet: dict[str, float] = Field(default_factory=dict)

    @field_validator("as_of")
    @classmethod
    def _iso(cls, as_of: str | None) -> str | None:
        if as_of is None:
            return None
        try:
            datetime.fromisoformat(as_of.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"as_of {as_of!r} is not an ISO-8601 date or time (e.g. 2025-02-20T00:00:00Z)") from None
        return as_of
