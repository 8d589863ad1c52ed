"""A book flattened into numpy arrays: positions (P rows), holdings per bucket and asset (H rows), buckets (B).

A *bucket* is one margin pool: the cross pool of an account, or one isolated position.  Every position belongs to
one bucket; every bucket holds one holding row per asset it has a balance in and per settle asset of its
positions (so that unrealized PnL folds into that asset's equity, as venues do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .loading import LoadedBook, default_mark
from .schema import CollateralRule, Contract
from .schema.rules import PLAIN_COLLATERAL
from .unit_margin import UnitMargins, UnitMember, build_units


@dataclass(frozen=True)
class BucketId:
    venue: str
    account: str
    symbol: str | None = None
    """None for the account's cross pool; the position's symbol for an isolated bucket."""

    @property
    def label(self) -> str:
        tail = "cross" if self.symbol is None else f"isolated/{self.symbol}"
        return f"{self.venue}/{self.account}/{tail}"


@dataclass(frozen=True)
class PositionArrays:
    """Per-position data.  Prices: entry/mark in the contract's quote unit; brackets in settle units."""

    bucket: np.ndarray  # (P,) int
    underlying: np.ndarray  # (P,) int asset index
    settle: np.ndarray  # (P,) int asset index
    hold: np.ndarray  # (P,) int holding row of the settle asset in the position's bucket
    qty: np.ndarray
    contract_size: np.ndarray
    inverse: np.ndarray  # bool
    entry: np.ndarray
    mark: np.ndarray
    leverage: np.ndarray  # nan = bracket's max leverage
    fee_rate: np.ndarray
    entry_basis: np.ndarray  # bool: maintenance notional taken at entry
    caps: np.ndarray  # (P, T)
    mmrs: np.ndarray  # (P, T)
    cums: np.ndarray  # (P, T)
    max_leverage: np.ndarray  # (P, T)
    size_im_base: np.ndarray  # nan when the contract has no size_margin
    size_mm_base: np.ndarray
    size_rate: np.ndarray
    imf: np.ndarray  # dYdX effective initial-margin fraction; nan when absent
    ask_settle: np.ndarray  # ask rate converting a settle-asset requirement to USD

    def take(self, idx: np.ndarray) -> PositionArrays:
        """The rows ``idx`` (may repeat rows)."""
        return PositionArrays(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.qty)


@dataclass(frozen=True)
class HoldingArrays:
    """Per (bucket, asset) collateral rule and balance (asset units)."""

    bucket: np.ndarray
    asset: np.ndarray
    balance: np.ndarray
    asset_unit: np.ndarray  # bool: tier caps in asset units rather than USD
    lows: np.ndarray  # (H, T) slice starts
    widths: np.ndarray  # (H, T) slice widths (inf for the unbounded slice; 0 padding)
    ratios: np.ndarray  # (H, T)
    bid: np.ndarray
    ask: np.ndarray
    size_k: np.ndarray
    liability_weight: np.ndarray

    def take(self, idx: np.ndarray) -> HoldingArrays:
        return HoldingArrays(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def __len__(self) -> int:
        return len(self.balance)


@dataclass(frozen=True)
class CompiledBook:
    assets: list[str]
    prices: np.ndarray  # (A,) USD
    buckets: list[BucketId]
    bucket_rules: list[str]  # dated rule-set name per bucket
    positions: PositionArrays
    holdings: HoldingArrays
    position_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (venue, account, symbol)
    position_paths: list[str] = field(default_factory=list)  # key path of each position in the book file
    position_settle_names: list[str] = field(default_factory=list)
    position_modes: list[str] = field(default_factory=list)
    isolated_margin: np.ndarray = field(default_factory=lambda: np.zeros(0))  # nan for cross positions
    bucket_extra_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) USD: risk-matrix margins
    bucket_extra_im: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (B,) USD
    standalone_mm_settle: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) risk-matrix positions
    standalone_im_settle: np.ndarray = field(default_factory=lambda: np.zeros(0))  # alone; nan elsewhere
    units: UnitMargins = field(default_factory=UnitMargins.empty)  # portfolio-margin risk units

    @property
    def n_buckets(self) -> int:
        return len(self.buckets)


def _pad(rows: list[list[float]], fill_last: bool, pad_value: float = 0.0) -> np.ndarray:
    width = max((len(r) for r in rows), default=1)
    out = np.empty((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        out[i, len(r) :] = r[-1] if (fill_last and r) else pad_value
    return out


def _holding_rows(rule: CollateralRule) -> tuple[list[float], list[float], list[float]]:
    lows, widths, ratios = [], [], []
    low = 0.0
    for tier in rule.tiers:
        cap = math.inf if tier.cap is None else tier.cap
        lows.append(low)
        widths.append(cap - low)
        ratios.append(tier.ratio)
        low = cap
    return lows, widths, ratios


def compile_book(loaded: LoadedBook) -> CompiledBook:
    """Flatten a validated book.  Order: venues, accounts, positions as written in the book."""
    book = loaded.book
    assets = sorted(book.prices)
    aidx = {a: i for i, a in enumerate(assets)}
    buckets: list[BucketId] = []
    bucket_rules: list[str] = []
    hold_rows: list[tuple[int, str, float, CollateralRule]] = []
    hold_index: dict[tuple[int, str], int] = {}

    def holding(b: int, asset: str, balance: float, rule: CollateralRule) -> int:
        key = (b, asset)
        if key not in hold_index:
            hold_index[key] = len(hold_rows)
            hold_rows.append((b, asset, 0.0, rule))
        i = hold_index[key]
        bb, a, bal, r = hold_rows[i]
        hold_rows[i] = (bb, a, bal + balance, r)
        return i

    pos: dict[str, list] = {k: [] for k in PositionArrays.__dataclass_fields__}
    keys, paths, settle_names, modes, iso = [], [], [], [], []
    matrix_rows: list[UnitMember] = []
    for venue_id, venue in book.venues.items():
        vr = loaded.rules[venue_id]
        rules = vr.rules
        for account_id, account in venue.accounts.items():
            cross = len(buckets)
            buckets.append(BucketId(venue_id, account_id))
            bucket_rules.append(vr.name)
            for asset, bal in account.collateral.items():
                rule = rules.collateral_rule(asset)
                assert rule is not None  # checked by loading.check_book
                holding(cross, asset, bal, rule)
            for i, p in enumerate(account.positions):
                c: Contract = rules.contracts[p.symbol]
                if p.margin_mode == "isolated":
                    b = len(buckets)
                    buckets.append(BucketId(venue_id, account_id, p.symbol))
                    bucket_rules.append(vr.name)
                    h = holding(b, c.settle, p.isolated_margin or 0.0, PLAIN_COLLATERAL)
                    ask = 1.0
                    iso.append(p.isolated_margin or 0.0)
                else:
                    b = cross
                    rule = rules.collateral_rule(c.settle) or PLAIN_COLLATERAL
                    h = holding(b, c.settle, 0.0, rule)
                    ask = rule.ask_rate
                    iso.append(math.nan)
                mark = p.mark_price if p.mark_price is not None else default_mark(c, book.prices)
                sm, oi = c.size_margin, c.open_interest_scaling
                imf = math.nan
                if oi is not None:
                    base = 1.0 / c.brackets[0].max_leverage
                    scale = max((oi.open_interest - oi.lower_cap) / (oi.upper_cap - oi.lower_cap), 0.0)
                    imf = min(base + scale * (1.0 - base), 1.0)
                row = dict(
                    bucket=b, underlying=aidx[c.underlying], settle=aidx[c.settle], hold=h, qty=p.qty,
                    contract_size=c.contract_size, inverse=c.kind == "inverse", entry=p.entry_price, mark=mark,
                    leverage=math.nan if p.leverage is None else p.leverage, fee_rate=rules.liquidation_fee_rate,
                    entry_basis=rules.mm_price_basis == "entry", caps=list(c.caps), mmrs=list(c.mmrs),
                    cums=list(c.cums), max_leverage=list(c.max_leverages),
                    size_im_base=sm.initial_base if sm else math.nan,
                    size_mm_base=sm.maintenance_base if sm else math.nan,
                    size_rate=sm.rate_per_unit if sm else math.nan, imf=imf, ask_settle=ask,
                )
                if rules.margin_model is not None:  # the venue's portfolio margin replaces the brackets
                    row.update(mmrs=[0.0], cums=[0.0], caps=[math.inf], max_leverage=[1.0], fee_rate=0.0,
                               size_im_base=math.nan, size_mm_base=math.nan, size_rate=math.nan, imf=0.0)
                    matrix_rows.append(UnitMember(
                        row=len(keys), bucket=b, underlying=aidx[c.underlying], name=c.underlying,
                        inverse=c.kind == "inverse", size=p.qty * c.contract_size, mark=mark,
                        settle_price=book.prices[c.settle], underlying_price=book.prices[c.underlying], ask=ask,
                        model=rules.margin_model))
                for k, v in row.items():
                    pos[k].append(v)
                keys.append((venue_id, account_id, p.symbol))
                paths.append(f"venues.{venue_id}.accounts.{account_id}.positions[{i}]")
                settle_names.append(c.settle)
                modes.append(p.margin_mode)

    tiered = ("caps", "mmrs", "cums", "max_leverage")  # padded by repeating the last bracket
    arrays = {}
    for k, values in pos.items():
        if k in tiered:
            arrays[k] = _pad(values, True) if values else np.zeros((0, 1))
        else:
            arrays[k] = np.asarray(values, dtype=bool if k in ("inverse", "entry_basis") else None)
            if not values:
                arrays[k] = np.zeros(0, dtype=int if k in ("bucket", "underlying", "settle", "hold") else float)
    positions = PositionArrays(**arrays)

    tiers = [_holding_rows(r) for _, _, _, r in hold_rows]
    holdings = HoldingArrays(
        bucket=np.array([b for b, *_ in hold_rows], dtype=int),
        asset=np.array([aidx[a] for _, a, _, _ in hold_rows], dtype=int),
        balance=np.array([bal for _, _, bal, _ in hold_rows], dtype=float),
        asset_unit=np.array([r.tier_unit == "asset" for *_, r in hold_rows], dtype=bool),
        lows=_pad([t[0] for t in tiers], False) if tiers else np.zeros((0, 1)),
        widths=_pad([t[1] for t in tiers], False) if tiers else np.zeros((0, 1)),
        ratios=_pad([t[2] for t in tiers], False) if tiers else np.zeros((0, 1)),
        bid=np.array([r.bid_rate for *_, r in hold_rows], dtype=float),
        ask=np.array([r.ask_rate for *_, r in hold_rows], dtype=float),
        size_k=np.array([r.size_discount_k for *_, r in hold_rows], dtype=float),
        liability_weight=np.array([r.liability_weight for *_, r in hold_rows], dtype=float),
    )
    units, alone = build_units(matrix_rows)
    ones = np.ones(len(units))
    extra_mm, extra_im = np.zeros(len(buckets)), np.zeros(len(buckets))
    np.add.at(extra_mm, units.bucket, units.maintenance(ones))
    np.add.at(extra_im, units.bucket, units.initial(ones))
    alone_mm, alone_im = np.full(len(keys), math.nan), np.full(len(keys), math.nan)
    for m in matrix_rows:  # a position's requirement alone, in its settle asset (as venues print it)
        to_settle = m.settle_price * m.ask
        alone_mm[m.row], alone_im[m.row] = (v / to_settle for v in alone[m.row])
    return CompiledBook(
        assets=assets, prices=np.array([book.prices[a] for a in assets], dtype=float), buckets=buckets,
        bucket_rules=bucket_rules, positions=positions, holdings=holdings, position_keys=keys, position_paths=paths,
        position_settle_names=settle_names, position_modes=modes, isolated_margin=np.array(iso, dtype=float),
        bucket_extra_mm=extra_mm, bucket_extra_im=extra_im, standalone_mm_settle=alone_mm,
        standalone_im_settle=alone_im, units=units,
    )
