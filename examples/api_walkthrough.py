# %% [markdown]
# # pmopt from Python: the example desk in a notebook
#
# Each `# %%` cell runs on its own in VS Code, PyCharm or Jupyter (with jupytext); `python
# examples/api_walkthrough.py` runs them all. The calls mirror the commands: `pm.margin`, `pm.risk`,
# `pm.optimize`, `pm.sweep`, `pm.validate`. They take paths, or books and policies already in memory.

# %%
from pathlib import Path

import pandas as pd

import optimizer as pm
from risk_models.yaml_io import read_yaml

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
pd.set_option("display.float_format", "{:,.2f}".format)

DESK = Path(__file__).resolve().parent / "multi_venue"
BOOK, POLICY = DESK / "book.yaml", DESK / "policy.yaml"

# %% [markdown]
# ## 1. Check the files before anything runs (`pmopt validate`)

# %%
problems = pm.validate(BOOK) + pm.validate(POLICY)
print("problems:", problems or "none")

# %% [markdown]
# ## 2. Venue margin and liquidation prices (`pmopt margin`): one row per position

# %%
positions = pm.margin(BOOK)
print(positions[["venue", "account", "symbol", "margin_mode", "notional", "maintenance_margin",
                 "liquidation_price"]])
accounts = pm.margin(BOOK, level="account")
print(accounts[["venue", "account", "equity", "maintenance_margin", "margin_ratio"]])

# %% [markdown]
# ## 3. Net portfolio margin (`pmopt risk --policy`): one row per account
#
# `diversification_benefit` is what the correlation offsets inside a pool are worth: the sum of the standalone
# margins less the net one.

# %%
risk = pm.risk(BOOK, POLICY)
print(risk[["venue", "account", "equity", "net_portfolio_margin", "standalone_margin",
            "diversification_benefit"]])
top = pm.contributions(BOOK, POLICY).sort_values("contribution", ascending=False).head(5)
print(top)

# %% [markdown]
# ## 4. The recommendation (`pmopt optimize`)

# %%
rec = pm.optimize(BOOK, POLICY)
print(f"{rec.status}: carry {rec.document['objective_value_before']:,.2f} -> {rec.objective_value:,.2f} USD "
      f"over the carry horizon, {rec.carry_saved_per_year:,.2f} USD a year saved")
print(rec.transfers)
print(rec.margin_modes)
equity = rec.before_after.query("metric == 'equity'")
print(equity[["venue", "account", "before", "after", "change"]])
for line in rec.binding_constraints.explanation:
    print("-", line)

# %% [markdown]
# The recommended state is a book: evaluate it like any other.

# %%
after = pm.margin(rec.book, level="account")
print(after[["venue", "account", "equity", "maintenance_margin", "margin_ratio"]])

# %% [markdown]
# ## 5. What-if in memory: a planned trade, and a policy as a dict

# %%
trades = pd.DataFrame([{"venue": "binance", "account": "main", "symbol": "ETHUSDT", "qty": 300.0,
                        "price": 2719.10}])
policy = read_yaml(POLICY) | {"cross": {"buffer": 2.0}}
what_if = pm.optimize(BOOK, policy, trades)
print(f"buffer 2 after buying back 300 ETH: locked {what_if.document['after']['locked']:,.2f} USD "
      f"(now {rec.document['after']['locked']:,.2f} USD)")

# %% [markdown]
# ## 6. Capital needed as the buffer varies (`pmopt sweep`)

# %%
sweep = pm.sweep(BOOK, POLICY, "buffer", [1.0, 2.0])  # one compiled problem, re-solved per value
print(sweep)
