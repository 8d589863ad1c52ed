"""Rule sets from ccxt's unified ``fetch_leverage_tiers()`` output, and a readable YAML writer.

ccxt returns ``{symbol: [tier, ...]}`` with tiers ``{tier, currency, minNotional, maxNotional,
maintenanceMarginRate, maxLeverage, info}``.  :func:`rules_from_ccxt_tiers` turns that into a plain dict in
the rules-file shape (spec §2); :func:`write_rules_yaml` writes such a dict with one bracket per line.

Symbol conventions (ccxt): ``BASE/QUOTE:SETTLE`` for perpetuals, ``BASE/QUOTE:SETTLE-YYMMDD`` for dated
futures.  Contract ids follow Binance's: ``BTCUSDT``, ``1000BONKUSDC``, ``BTCUSDT_241227``.  The underlying
is the base exactly as ccxt spells it, so ``1000BONK``'s price is the price of 1000 BONK.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.representer import RoundTripRepresenter

from .schema.rules import Contract

_TOP_ORDER = ("version", "venue", "source", "date", "not_covered", "liquidation_fee_rate", "mm_price_basis",
              "mode_switch", "isolated_with_multi_asset", "contracts", "collateral", "margin_model")
_CONTRACT_ORDER = ("underlying", "settle", "kind", "contract_size", "brackets", "isolated_allowed",
                   "size_margin", "open_interest_scaling")


class CcxtSymbol(NamedTuple):
    """The parts of a ccxt derivative symbol."""

    base: str
    quote: str
    settle: str
    expiry: str | None

    @property
    def contract_id(self) -> str:
        """Binance-style id: ``BTCUSDT``, or ``BTCUSDT_241227`` for a dated future."""
        root = self.base + self.quote
        return root if self.expiry is None else f"{root}_{self.expiry}"

    @property
    def kind(self) -> str:
        """``linear`` when settled in the quote asset, else ``inverse``."""
        return "linear" if self.settle == self.quote else "inverse"


def parse_ccxt_symbol(symbol: str) -> CcxtSymbol:
    """Split ``BASE/QUOTE:SETTLE[-EXPIRY]``; ValueError naming the symbol for spot or option symbols."""
    if not isinstance(symbol, str):
        raise ValueError(f"{symbol!r}: a ccxt symbol must be a string")
    pair, sep, settlement = symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not (sep and slash and base and quote and settlement):
        raise ValueError(f"{symbol}: not a ccxt derivative symbol (expected BASE/QUOTE:SETTLE[-YYMMDD])")
    settle, _, expiry = settlement.partition("-")
    if not settle or "-" in expiry or (expiry and not expiry.isalnum()):
        raise ValueError(f"{symbol}: unsupported settlement part {settlement!r} (options are not supported)")
    return CcxtSymbol(base, quote, settle, expiry or None)


def rules_from_ccxt_tiers(
    tiers: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    venue: str,
    source: str,
    date: str | None = None,
    liquidation_fee_rate: float = 0.0,
    not_covered: str | None = None,
    contract_sizes: Mapping[str, float] | None = None,
    contract_ids: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Convert ccxt leverage tiers into a rules-file dict (spec §2), contracts sorted by id.

    Brackets: ``cap`` = maxNotional (None when infinite or missing, last tier only), ``mmr`` =
    maintenanceMarginRate, ``max_leverage`` = maxLeverage; tiers are sorted by minNotional and must be
    contiguous from 0.  Caps are in the tiers' currency: the settle asset (coin units for inverse contracts).
    ``contract_sizes`` maps ccxt symbols to a contract size; linear contracts default to 1 (qty in base
    units), inverse contracts (USD face value per contract) must be given one.  ``contract_ids`` maps ccxt
    symbols to the venue's contract ids (default: the Binance-style id of :class:`CcxtSymbol`).  Every settle
    asset is accepted as collateral at ratio 1.  Raises ValueError naming the symbol (and tier) on malformed input.
    """
    sizes = dict(contract_sizes or {})
    ids = dict(contract_ids or {})
    contracts: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for symbol, symbol_tiers in tiers.items():
        parsed = parse_ccxt_symbol(symbol)
        cid = ids.get(symbol, parsed.contract_id)
        if cid in contracts:
            raise ValueError(f"{symbol}: contract id {cid} is also produced by {origin[cid]}")
        origin[cid] = symbol
        contracts[cid] = _contract(symbol, parsed, symbol_tiers, sizes.get(symbol))
    settles = sorted({c["settle"] for c in contracts.values()})
    return {
        "version": 1,
        "venue": venue,
        "source": source,
        "date": date,
        "not_covered": not_covered,
        "liquidation_fee_rate": liquidation_fee_rate,
        "contracts": {cid: contracts[cid] for cid in sorted(contracts)},
        "collateral": {asset: {"tiers": [{"cap": None, "ratio": 1.0}]} for asset in settles},
    }


def _contract(symbol: str, parsed: CcxtSymbol, tiers: Any, size: float | None) -> dict[str, Any]:
    if size is None:
        if parsed.kind == "inverse":
            raise ValueError(f"{symbol}: inverse contract without a contract size "
                             f"(pass contract_sizes[{symbol!r}])")
        size = 1.0
    if not isinstance(tiers, Sequence) or isinstance(tiers, str) or not tiers:
        raise ValueError(f"{symbol}: expected a non-empty list of tiers")
    rows = [_tier_row(symbol, i, t, parsed.settle) for i, t in enumerate(tiers)]
    rows.sort(key=lambda r: r[1])
    brackets: list[dict[str, Any]] = []
    previous_cap = 0.0
    for n, (label, floor, cap, mmr, lev) in enumerate(rows):
        if floor != previous_cap:
            raise ValueError(f"{symbol}: tier {label} starts at {floor:g}, expected {previous_cap:g} "
                             "(tiers must be contiguous from 0)")
        if cap is None and n < len(rows) - 1:
            raise ValueError(f"{symbol}: tier {label} is unbounded but is not the last tier")
        brackets.append({"cap": cap, "mmr": mmr, "max_leverage": lev})
        previous_cap = cap if cap is not None else math.inf
    contract = {"underlying": parsed.base, "settle": parsed.settle, "kind": parsed.kind,
                "contract_size": size, "brackets": brackets}
    try:
        Contract.model_validate(contract)
    except ValidationError as exc:
        reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"{symbol}: {reasons}") from None
    return contract


_Row = tuple[str, float, float | None, float, float]


def _tier_row(symbol: str, index: int, tier: Any, settle: str) -> _Row:
    """(label, floor, cap, mmr, max_leverage) of one ccxt tier, checked."""
    if not isinstance(tier, Mapping):
        raise ValueError(f"{symbol}: tier #{index + 1} is not a mapping")
    label = str(tier.get("tier", f"#{index + 1}"))
    currency = tier.get("currency")
    if currency is not None and currency != settle:
        raise ValueError(f"{symbol}: tier {label} is in {currency}, expected the settle asset {settle}")
    floor = _number(symbol, label, tier, "minNotional")
    raw_cap = tier.get("maxNotional")
    cap = None if raw_cap is None else _number(symbol, label, tier, "maxNotional", allow_inf=True)
    if cap is not None and math.isinf(cap):
        cap = None
    if cap is not None and cap <= floor:
        raise ValueError(f"{symbol}: tier {label} has maxNotional {cap:g} <= minNotional {floor:g}")
    mmr = _number(symbol, label, tier, "maintenanceMarginRate")
    return label, floor, cap, mmr, _number(symbol, label, tier, "maxLeverage")


def _number(symbol: str, label: str, tier: Mapping[str, Any], key: str, *, allow_inf: bool = False) -> float:
    value = tier.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{symbol}: tier {label} has no numeric {key} (got {value!r})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{symbol}: tier {label} has a non-finite {key}")
    return value


# --- writing ------------------------------------------------------------------------------------------------


def write_rules_yaml(rules: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a rules dict as YAML: canonical key order, brackets and haircut tiers one flow mapping per line.

    Integral floats are written without a fraction (``50000``), None as ``null``; loading the file gives back
    values equal to the dict's.
    """
    yaml = YAML(typ="rt", pure=True)
    yaml.Representer = _Representer
    yaml.width = 110
    yaml.indent(mapping=2, sequence=4, offset=2)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.dump(_document(rules), fh)


class _Representer(RoundTripRepresenter):
    """Explicit ``null`` and short numbers."""


def _represent_none(rep: RoundTripRepresenter, _: None) -> Any:
    return rep.represent_scalar("tag:yaml.org,2002:null", "null")


def _represent_float(rep: RoundTripRepresenter, value: float) -> Any:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return rep.represent_scalar("tag:yaml.org,2002:int", str(int(value)))
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"  # YAML 1.1 readers need a dot in the mantissa
    return rep.represent_scalar("tag:yaml.org,2002:float", text)


_Representer.add_representer(type(None), _represent_none)
_Representer.add_representer(float, _represent_float)


def _document(rules: Mapping[str, Any]) -> CommentedMap:
    doc = _ordered(rules, _TOP_ORDER)
    if "contracts" in doc:
        doc["contracts"] = CommentedMap((cid, _contract_node(c)) for cid, c in rules["contracts"].items())
    if "collateral" in doc:
        doc["collateral"] = CommentedMap((a, _collateral_node(r)) for a, r in rules["collateral"].items())
    if isinstance(rules.get("margin_model"), Mapping):
        model = _ordered(rules["margin_model"], ("kind",))
        if isinstance(model.get("per_underlying"), Mapping):
            model["per_underlying"] = CommentedMap(
                (u, _flow(p)) for u, p in rules["margin_model"]["per_underlying"].items())
        doc["margin_model"] = model
    return doc


def _contract_node(contract: Mapping[str, Any]) -> CommentedMap:
    node = _ordered(contract, _CONTRACT_ORDER)
    if "brackets" in node:
        node["brackets"] = _flow_rows(contract["brackets"])
    for key in ("size_margin", "open_interest_scaling"):
        if isinstance(node.get(key), Mapping):
            node[key] = _flow(contract[key])
    return node


def _collateral_node(rule: Mapping[str, Any]) -> CommentedMap:
    node = _ordered(rule, ("tier_unit", "tiers"))
    if "tiers" in node:
        node["tiers"] = _flow_rows(rule["tiers"])
    return node


def _ordered(data: Mapping[str, Any], order: Sequence[str]) -> CommentedMap:
    """Keys of ``order`` first (in that order), then the others as given."""
    keys = [k for k in order if k in data] + [k for k in data if k not in order]
    return CommentedMap((k, data[k]) for k in keys)


def _flow(data: Mapping[str, Any]) -> CommentedMap:
    node = CommentedMap(data)
    node.fa.set_flow_style()
    return node


def _flow_rows(rows: Sequence[Mapping[str, Any]]) -> CommentedSeq:
    seq = CommentedSeq(_flow(r) for r in rows)
    seq.fa.set_block_style()
    return seq


def dump_rules_json(rules: Mapping[str, Any]) -> str:
    """The rules dict as JSON text (valid YAML 1.2, parsed much faster): one contract per line."""
    lines = ["{"]
    items = list(rules.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key in ("contracts", "collateral") and isinstance(value, Mapping) and value:
            lines.append(f" {json.dumps(key)}: {{")
            inner = list(value.items())
            for j, (name, body) in enumerate(inner):
                sep = "," if j < len(inner) - 1 else ""
                lines.append(f"  {json.dumps(name)}: {json.dumps(body, ensure_ascii=False)}{sep}")
            lines.append(f" }}{comma}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"
