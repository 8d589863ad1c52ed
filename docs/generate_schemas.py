"""Write the JSON Schemas of pmopt's input files and the format reference generated from them.

    python docs/generate_schemas.py            # writes docs/schema/*.schema.json and docs/format-reference.md
    python docs/generate_schemas.py --check    # exit code 1 when a committed file differs from the models

The schemas come from the pydantic models (``model_json_schema()``) that validate the files, so they say exactly
what pmopt accepts. Field descriptions are the models' attribute docstrings where they have one, else the
``DESCRIPTIONS`` below (taken from the format specification and docs/format-extensions.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from risk_models.schema import Book, Rules  # noqa: E402
from risk_models.schema.policy import Policy  # noqa: E402

SCHEMA_DIR = ROOT / "docs" / "schema"
REFERENCE = ROOT / "docs" / "format-reference.md"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _optional_models() -> dict[str, tuple[str, type[BaseModel], str]]:
    """File formats whose models may not exist in every checkout (the batch manifest, the ccxt import map)."""
    out: dict[str, tuple[str, type[BaseModel], str]] = {}
    try:
        from risk_models.schema.manifest import Manifest
    except ImportError:  # pragma: no cover
        pass
    else:
        out["manifest"] = ("Batch manifest (`pmopt batch MANIFEST`, spec §7)", Manifest,
                           "Named optimization jobs, each a book, a policy and optional planned trades; paths are "
                           "relative to the manifest.")
    try:
        from risk_models.schema.imports import ImportMap
    except ImportError:  # pragma: no cover
        pass
    else:
        out["import-map"] = ("ccxt account map (`pmopt import ccxt --accounts MAP.yaml`)", ImportMap,
                             "Several saved ccxt accounts (positions, balance, optional tiers) combined into one "
                             "book; paths are relative to the map file.")
    return out


MODELS: dict[str, tuple[str, type[BaseModel], str]] = {
    "book": ("Book (`book.yaml`, spec §1)", Book,
             "What the desk holds now: prices, venues with their accounts (collateral and positions), the wallet."),
    "rules": ("Rules (`rules.yaml`, spec §2)", Rules,
              "One venue's margin rules: contracts with maintenance brackets, accepted collateral with haircut "
              "tiers, and optionally the venue's own portfolio-margin model."),
    "policy": ("Policy (`policy.yaml`, spec §3)", Policy,
               "What the analyst asks of the risk model and the optimizer."),
    **_optional_models(),
}

DESCRIPTIONS: dict[str, str] = {
    # book
    "Book.version": "Format version; always 1.",
    "Book.as_of": "ISO-8601 date or time; scenario windows of market data end on its date (default: the data's "
                  "last day).",
    "Book.venues": "Venue id (free text) → the venue's rules and accounts.",
    "Book.wallet": "Holdings off every venue, asset units: the optimizer's free capital.",
    "Venue.rules": "A built-in rule-set name (dated, or an undated alias of the newest) or a path to a rules file, "
                   "relative to the book.",
    "Venue.accounts": "Account id (free text) → the account.",
    "Account.collateral": "Cross-pool balances in asset units; negative = a loan the desk already has.",
    "Account.positions": "Open positions; a symbol appears at most once per account (one-way mode).",
    "Position.symbol": "Contract id; must exist in the venue's rules.",
    "Position.qty": "Signed size: + long, − short; linear: base-asset units, inverse: contracts. Not 0.",
    "Position.entry_price": "Average entry price in the contract's quote unit (settle asset for linear, USD for "
                            "inverse).",
    "Position.mark_price": "Default: prices[underlying] / prices[settle] (linear), prices[underlying] (inverse).",
    "Position.margin_mode": "cross (shares the account's pool) or isolated (its own bucket).",
    "Position.isolated_margin": "Isolated only: the isolated bucket's wallet balance, settle-asset units.",
    "Position.leverage": "Initial margin = notional / leverage (default: the bracket's max leverage).",
    "Position.pinned": "true: the optimizer may not change this position's margin mode.",
    # rules
    "Rules.version": "Format version; always 1.",
    "Rules.venue": "The venue's name.",
    "Rules.source": "Where the numbers come from, and their date.",
    "Rules.liquidation_fee_rate": "Added × notional to every maintenance requirement (venues that liquidate at "
                                  "equity <= MM + closing fee).",
    "Rules.mm_price_basis": "Price at which notional is taken for maintenance margin: mark, or entry (Bybit's "
                            "isolated formula).",
    "Rules.mode_switch": "free, or close_reopen: an open position changes margin mode only by closing and "
                         "reopening it (Binance).",
    "Rules.isolated_with_multi_asset": "false: an account whose cross pool holds an asset other than its "
                                       "contracts' settle assets cannot hold isolated positions (Binance "
                                       "Multi-Assets mode).",
    "Rules.contracts": "Contract id → contract.",
    "Rules.collateral": "Asset → how the cross pool values it. Settle assets not listed count at 100 %.",
    "Rules.margin_model": "The venue's own portfolio-margin model; absent = tiered per-position maintenance "
                          "margin (brackets).",
    "Contract.underlying": "The asset whose price moves the contract.",
    "Contract.settle": "The asset PnL and margin are paid in.",
    "Contract.kind": "linear (PnL in the settle asset) or inverse (coin-margined: PnL in the coin).",
    "Contract.contract_size": "Linear: base units per qty unit; inverse: USD face value per contract.",
    "Contract.isolated_allowed": "false: the contract can only be held cross.",
    "Contract.size_margin": "Deribit-style size-dependent rates; supersedes the brackets.",
    "Contract.open_interest_scaling": "dYdX v4 open-interest scaling of the initial margin fraction.",
    "Bracket.cap": "Upper notional bound in settle-asset units; null = unbounded. A finite last cap is the "
                   "venue's position limit.",
    "Bracket.mmr": "Maintenance margin rate of the bracket (fraction); cum is derived from the caps.",
    "Bracket.max_leverage": "Largest leverage allowed in the bracket; initial margin rate = 1 / leverage.",
    "SizeMargin.initial_base": "Initial margin rate at zero size (fraction).",
    "SizeMargin.maintenance_base": "Maintenance margin rate at zero size (fraction).",
    "SizeMargin.rate_per_unit": "Rate added per settle unit of notional.",
    "OpenInterestScaling.lower_cap": "Open interest (USD) below which the IMF is not scaled.",
    "OpenInterestScaling.upper_cap": "Open interest (USD) at which the IMF reaches 1.",
    "OpenInterestScaling.open_interest": "The market-wide open interest, USD (set by the user; 0 = no scaling).",
    "CollateralRule.tier_unit": "Unit of the tier caps: usd or asset units.",
    "CollateralRule.tiers": "Haircut tiers, applied slice by slice; ratios must not increase.",
    "CollateralRule.bid_rate": "A positive balance is valued at balance × price × bid_rate before the tiers.",
    "CollateralRule.ask_rate": "A liability, and a requirement settled in the asset, convert at price × ask_rate.",
    "HaircutTier.cap": "Upper bound of the slice (USD or asset units, see tier_unit); null = unbounded.",
    "HaircutTier.ratio": "Share of the slice's value that counts (fraction).",
    "RiskMatrixModel.kind": "risk_matrix: Deribit-style portfolio margin on the account's net delta.",
    "RiskMatrixModel.per_underlying": "Underlying → overrides of any parameter above.",
    "OkxPmModel.kind": "okx_pm: OKX portfolio margin per risk unit (underlying).",
    "OkxPmModel.imr_factor": "Initial margin = imr_factor × maintenance margin.",
    "OkxPmModel.extreme_cover": "Share of the MR6 extreme-move loss counted.",
    "OkxPmModel.groups": "Underlying → its spot-shock and extreme-move grid.",
    "OkxPmModel.others": "The grid of underlyings not listed in groups.",
    "OkxGroup.spot_moves": "MR1 spot-shock moves, each applied up and down (fractions).",
    "OkxGroup.extreme_move": "MR6 extreme move, up and down (fraction).",
    # policy
    "Policy.version": "Format version; always 1.",
    "Policy.objective": "carry_cost (yield forgone + transfer, mode-switch and borrowing costs) or locked_value.",
    "Policy.carry_horizon_days": "How long the allocation is expected to stand (until the next rebalance).",
    "Policy.risk_model": "The correlation-aware model behind the buffer constraints.",
    "Policy.stress_scenarios": "Named joint shocks added to the scenario set (e.g. a depeg).",
    "Policy.cross": "Buffer survival of every cross pool.",
    "Policy.isolated": "Liquidation distance of every isolated position.",
    "Policy.concentration": "Asset → max share of a cross pool's raw collateral value in that non-settle asset.",
    "Policy.venue_cap": "Venue → max share of the desk's total capital (raw USD) on that venue.",
    "Policy.reserve": "Asset → minimum kept free in the wallet, asset units.",
    "Policy.yields": "Asset → annual yield forgone by posting it instead of keeping it free (0 if absent).",
    "Policy.borrow_rates": "Asset → annual rate at which new loans may be taken; absent = no new borrowing.",
    "Policy.transfer_cost_bps": "Charged on every transfer leg, basis points of value.",
    "Policy.mode_switch_cost_bps": "Charged on the notional when a close_reopen venue's position changes mode.",
    "RiskModelPolicy.kind": "historical, filtered_historical, parametric (EWMA covariance) or grid (OKX-style "
                            "price grid per risk unit).",
    "RiskModelPolicy.horizon_days": "Risk horizon (margin period of risk), days.",
    "RiskModelPolicy.window_days": "Look-back window of daily returns, ending at the book's as_of.",
    "RiskModelPolicy.confidence": "Expected-shortfall confidence.",
    "RiskModelPolicy.measure": "es (expected shortfall) or worst (the worst scenario).",
    "RiskModelPolicy.pegged": "Assets held at a constant price in generated scenarios (default: USDT, USDC).",
    "RiskModelPolicy.method": "monte_carlo (a scenario set from the covariance) or delta_normal (closed-form "
                              "normal ES, a second-order cone); parametric only.",
    "StressScenario.name": "Unique name; it labels the scenario in reports.",
    "StressScenario.shocks": "Asset → simple return (> −1) applied as given; assets not named do not move.",
    "CrossPolicy.buffer": "k: in every scenario counted by the measure, pool equity >= k × maintenance margin "
                          "at the shocked prices.",
    "CrossPolicy.require_initial_margin": "Also require equity >= initial margin now.",
    "IsolatedPolicy.liquidation_distance": "An isolated position's liquidation price at least this far from "
                                           "its mark (fraction).",
    # manifest
    "Manifest.version": "Format version; always 1.",
    "Manifest.jobs": "The jobs, run in parallel; reported in this order.",
    "Job.name": "Unique (ignoring case); names the report file DIR/<name>.json.",
    "Job.book": "Path of the book, relative to the manifest.",
    "Job.policy": "Path of the policy, relative to the manifest.",
    "Job.trades": "Optional planned trades CSV (venue,account,symbol,qty,price), relative to the manifest.",
    # ccxt import map
    "ImportMap.version": "Format version; always 1.",
    "ImportMap.accounts": "The saved accounts to combine.",
    "ImportAccount.account": "The book's account id.",
    "ImportAccount.exchange": "The ccxt exchange id, when it differs from venue.",
    "ImportAccount.markets": "Saved ccxt markets, for contract sizes.",
    "ImportAccount.liquidation_fee_rate": "Closing-fee rate of the venue, written into rules made from tiers.",
    "ImportAccount.max_leverage": "Leverage cap written into rules made from tiers.",
    "ImportAccount.positions": "Saved fetch_positions() output.",
    "ImportAccount.balance": "Saved fetch_balance() output.",
}


_RISK_MATRIX = {
    "price_range": "The price moves span ± this fraction (Deribit's name; e.g. 0.16).",
    "buckets_count": "Price moves per side: 2 × buckets_count + 1 moves with 0.",
    "volatility_range_up": "Volatility shock up (Deribit's name); futures do not depend on it.",
    "volatility_range_down": "Volatility shock down (Deribit's name); futures do not depend on it.",
    "pnl_offset": "Gains in the risk vector are scaled by this before the worst case is taken.",
    "annualised_move_risk": "Deribit's parameter, kept for reference; futures margin does not use it.",
    "min_annualised_move": "Roll shock of a perpetual: |net delta| × this, added to the worst loss.",
    "max_delta_shock": "Deribit's parameter, kept for reference; the delta shock is not modelled.",
    "delta_total_liq_shock_threshold": "Deribit's parameter, kept for reference; the delta shock is not modelled.",
    "extended_table_factor": "Deribit's parameter, kept for reference; the extended table is not modelled.",
    "extended_dampener": "Deribit's parameter, kept for reference; the extended table is not modelled.",
    "mm_factor": "Maintenance margin = mm_factor × initial margin.",
}
DESCRIPTIONS.update({f"{model}.{key}": text for key, text in _RISK_MATRIX.items()
                     for model in ("RiskMatrixModel", "RiskMatrixParams")})


# == schemas ========================================================================================================

def schema_of(kind: str) -> dict[str, Any]:
    """The JSON Schema of one file kind, with descriptions filled in."""
    title, model, _ = MODELS[kind]
    schema = model.model_json_schema()
    objects = {model.__name__: schema, **schema.get("$defs", {})}
    for name, obj in objects.items():
        for field, prop in obj.get("properties", {}).items():
            prop.setdefault("description", DESCRIPTIONS.get(f"{name}.{field}", ""))
            if not prop["description"]:
                del prop["description"]
    return {"$schema": DIALECT, **schema, "title": title.split(" (")[0]}


def schema_texts() -> dict[Path, str]:
    """Every generated file and its text."""
    texts = {SCHEMA_DIR / f"{kind}.schema.json": json.dumps(schema_of(kind), indent=2, ensure_ascii=False) + "\n"
             for kind in MODELS}
    texts[REFERENCE] = reference_markdown({kind: schema_of(kind) for kind in MODELS})
    return texts


# == the markdown reference =========================================================================================

def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _constraints(s: dict[str, Any]) -> list[str]:
    out = []
    for key, fmt in (("exclusiveMinimum", "> {}"), ("minimum", "≥ {}"), ("exclusiveMaximum", "< {}"),
                     ("maximum", "≤ {}")):
        if key in s:
            out.append(fmt.format(s[key]))
    if s.get("minLength") or s.get("minProperties") or s.get("minItems"):
        out.append("non-empty")
    return out


def _type(s: dict[str, Any], link: Callable[[str], str]) -> tuple[str, list[str]]:
    """A readable type and the constraints found on the way (inside optionals, maps and lists)."""
    if "$ref" in s:
        return link(_ref_name(s["$ref"])), []
    if "const" in s:
        return f"`{json.dumps(s['const'])}`", []
    if "enum" in s:
        return "one of " + ", ".join(f"`{v}`" for v in s["enum"]), []
    if "oneOf" in s:
        names = " or ".join(link(_ref_name(o["$ref"])) for o in s["oneOf"])
        key = s.get("discriminator", {}).get("propertyName")
        return (f"{names} (chosen by `{key}`)" if key else names), []
    if "anyOf" in s:
        parts = [p for p in s["anyOf"] if p.get("type") != "null"]
        shown = [_type(p, link) for p in parts]
        text = " or ".join(t for t, _ in shown)
        if len(parts) < len(s["anyOf"]):
            text += " or null"
        return text, [c for p, (_, cs) in zip(parts, shown, strict=True) for c in _constraints(p) + cs]
    kind = s.get("type")
    if kind == "object" and isinstance(s.get("additionalProperties"), dict):
        inner, cons = _type(s["additionalProperties"], link)
        return f"map: name → {inner}", _constraints(s["additionalProperties"]) + cons
    if kind == "array":
        inner, cons = _type(s.get("items", {}), link)
        return f"list of {inner}", _constraints(s.get("items", {})) + cons
    return {"number": "number", "integer": "integer", "string": "text", "boolean": "true/false",
            "object": "mapping"}.get(kind, "any"), []


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def reference_markdown(schemas: dict[str, dict[str, Any]]) -> str:
    """The format reference: per file kind, one table per object (key, type, required, default, meaning)."""
    lines = ["# Format reference (version 1)", "",
             "Generated by `docs/generate_schemas.py` from the pydantic models that validate the files; do not edit",
             "by hand. The JSON Schemas beside it (`docs/schema/*.schema.json`) serve editors and other tools, e.g.",
             "the YAML language server: `# yaml-language-server: $schema=<path>/book.schema.json` on a book's first",
             "line. Every file carries `version: 1`; unknown and duplicated keys are errors. The meaning of each key",
             "is defined in the format specification (`formats.md`) and in `docs/format-extensions.md`.", ""]
    lines += ["| file | schema |", "| --- | --- |"]
    for kind in schemas:
        lines.append(f"| [{MODELS[kind][0]}](#{kind}) | [`schema/{kind}.schema.json`](schema/{kind}.schema.json) |")
    for kind, schema in schemas.items():
        title, model, intro = MODELS[kind]
        lines += ["", f'<a id="{kind}"></a>', "", f"## {title}", "", intro, ""]
        defs = schema.get("$defs", {})
        root = model.__name__
        objects = {root: schema, **defs}

        def link(name: str, kind: str = kind) -> str:
            return f"[{name}](#{kind}-{name.lower()})"

        order = _reachable(root, objects)
        for name in order:
            obj = objects[name]
            lines += [f'<a id="{kind}-{name.lower()}"></a>', "", f"### {name}", ""]
            desc = obj.get("description") if name != root else None
            if desc:
                lines += [_cell(desc).replace("``", "`"), ""]
            lines += ["| key | type | required | default | constraints | meaning |",
                      "| --- | --- | --- | --- | --- | --- |"]
            required = set(obj.get("required", []))
            for field, prop in obj.get("properties", {}).items():
                text, inner = _type(prop, link)
                cons = ", ".join(dict.fromkeys(_constraints(prop) + inner))
                default = "" if "default" not in prop else f"`{json.dumps(prop['default'], ensure_ascii=False)}`"
                meaning = _cell(prop.get("description", "")).replace("``", "`")
                lines.append(f"| `{field}` | {_cell(text)} | {'yes' if field in required else ''} | {default} | "
                             f"{cons} | {meaning} |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _reachable(root: str, objects: dict[str, dict[str, Any]]) -> list[str]:
    """Object names in the order they are first referenced, breadth first from the root."""
    order, queue = [root], [root]
    while queue:
        text = json.dumps(objects[queue.pop(0)].get("properties", {}))
        for name in objects:
            if f'"#/$defs/{name}"' in text and name not in order:
                order.append(name)
                queue.append(name)
    return order


# == main ===========================================================================================================

def stale_files() -> list[Path]:
    """Generated files whose committed text differs from what the models give now."""
    return [path for path, text in schema_texts().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that are out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run python docs/generate_schemas.py)", file=sys.stderr)
        return 1 if stale else 0
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in schema_texts().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
