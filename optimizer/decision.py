"""The optimizer's decision: its shared cvxpy variables and expressions, the policy knobs as Parameters, and the
named constraint group every term of the formulation returns.  Scaled USD as in :mod:`optimizer.problem`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy import sparse

from .problem import ProblemData


@dataclass
class Knobs:
    """Policy numbers as cvxpy Parameters, so that a sweep re-solves the compiled problem instead of rebuilding it."""

    buffer: cp.Parameter  # k
    tail: cp.Parameter  # 1 / (1 − α)
    yields: cp.Parameter  # (n_slots,) annual yield of each slot's asset × carry horizon in years
    iso_need: cp.Parameter  # (P,) scaled USD of isolated margin each position needs

    @classmethod
    def of(cls, data: ProblemData) -> Knobs:
        horizon = data.policy.carry_horizon_days / 365.0
        yields = np.array([data.policy.yields.get(data.assets[s.asset], 0.0) * horizon for s in data.slots])
        needs = np.array([p.iso_need if math.isfinite(p.iso_need) else 0.0 for p in data.positions])
        return cls(cp.Parameter(nonneg=True, value=data.buffer, name="buffer"),
                   cp.Parameter(nonneg=True, value=1.0 / (1.0 - data.alpha), name="tail"),
                   cp.Parameter(len(data.slots), value=yields, name="yields"),
                   cp.Parameter(len(data.positions), nonneg=True, value=needs, name="isolated need"))


@dataclass
class Decision:
    """The shared variables and the affine expressions built from them."""

    value: cp.Variable  # (n_slots,) scaled USD held in each (bucket, asset) slot
    slices: cp.Variable  # (n_slices,) haircut slices, scaled USD
    wallet: cp.Variable  # (A,)
    inflow: cp.Variable  # (n_slots,)
    outflow: cp.Variable  # (n_slots,)
    free: cp.Variable | None  # (n_free,) boolean or relaxed: 1 = isolated
    mode: dict[tuple[str, str], cp.Expression]  # account → boolean (or fixed): 1 = may isolate (Multi-Assets off)
    isolated: cp.Expression  # (P,) 1 = isolated, constants for fixed positions
    haircut_value: cp.Expression  # (n_slots,)
    knobs: Knobs
    slot_of_slice: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    extra: list[cp.Constraint] = field(default_factory=list)  # definitions of auxiliary variables
    borrow: cp.Variable | None = None  # (n_loans,) scaled USD of new loans at today's prices (data.loan_slots)
    borrowed: cp.Expression | None = None  # (n_slots,) the same per slot, 0 where no loan may be taken
    cuts: dict[int, np.ndarray] | None = None  # delta-normal only: outer-approximation directions per cross pool
    sigma: dict[int, cp.Expression] = field(default_factory=dict)  # delta-normal: Fᵀδ_b per cross pool (filled)
    iso_affine: tuple[np.ndarray, sparse.csr_array, cp.Variable] | None = None  # isolated = base + pick @ var
    at_risk: cp.Variable | None = None  # scenario cuts: each linear pool's value-at-risk variable t (filled)

    def times_isolated(self, matrix: np.ndarray, pos: list[int] | np.ndarray) -> cp.Expression:
        """``matrix`` (R, n) @ isolated[pos], (R,).  Built with one sparse coefficient on the mode variable: a
        dense matrix times an indexed expression makes cvxpy form R × (every mode) products, which at thousands
        of positions and tens of thousands of scenario rows costs minutes."""
        pos = np.asarray(pos, dtype=int)
        if isinstance(self.isolated, cp.Constant):
            return cp.Constant(matrix @ np.asarray(self.isolated.value, dtype=float)[pos])
        if self.iso_affine is None:
            return matrix @ self.isolated[pos]
        base, pick, var = self.iso_affine
        return matrix @ base[pos] + (sparse.csr_array(matrix) @ pick[pos]) @ var

    def net(self) -> cp.Expression:
        """(n_slots,) scaled USD: what each slot holds, less the new loan taken there."""
        return self.value if self.borrowed is None else self.value - self.borrowed


def make_decision(data: ProblemData, relax: bool = False, fixed_z: np.ndarray | None = None,
                  fixed_modes: dict[tuple[str, str], float] | None = None) -> Decision:
    n_slots = len(data.slots)
    widths = np.concatenate([s.widths for s in data.slots]) if data.slots else np.zeros(0)
    ratios = np.concatenate([s.ratios for s in data.slots]) if data.slots else np.zeros(0)
    slot_of_slice = np.concatenate([np.full(len(s.widths), i) for i, s in enumerate(data.slots)]).astype(int)
    slices = cp.Variable(len(widths), nonneg=True, name="slices")
    to_slot = sparse.csr_array((ratios, (slot_of_slice, np.arange(len(widths)))), shape=(n_slots, len(widths)))
    free_idx = [i for i, p in enumerate(data.positions) if not p.fixed]
    iso_affine = None
    if fixed_z is not None or not free_idx:
        free = None
        z0 = np.array([1.0 if p.isolated_now else 0.0 for p in data.positions])
        isolated = cp.Constant(fixed_z if fixed_z is not None else z0) if data.positions else cp.Constant(np.zeros(0))
    else:
        free = cp.Variable(len(free_idx), boolean=not relax, name="isolated")
        base = np.array([1.0 if (p.fixed and p.isolated_now) else 0.0 for p in data.positions])
        pick = sparse.csr_array((np.ones(len(free_idx)), (free_idx, np.arange(len(free_idx)))),
                                shape=(len(data.positions), len(free_idx)))
        isolated = base + pick @ free
        iso_affine = (base, pick, free)
    integral = not relax and fixed_z is None
    mode = {acct: cp.Constant(fixed_modes[acct]) if fixed_modes is not None and acct in fixed_modes
            else cp.Variable(boolean=integral, name=f"may_isolate {acct[0]}/{acct[1]}")
            for acct, exclusive in data.multi_asset_exclusive.items() if exclusive}
    borrow = borrowed = None
    if len(data.loan_slots):
        borrow = cp.Variable(len(data.loan_slots), nonneg=True, name="borrow")
        n_loans = len(data.loan_slots)
        borrowed = sparse.csr_array((np.ones(n_loans), (data.loan_slots, np.arange(n_loans))),
                                    shape=(n_slots, n_loans)) @ borrow
    return Decision(cp.Variable(n_slots, nonneg=True, name="value"), slices,
                    cp.Variable(len(data.assets), nonneg=True, name="wallet"),
                    cp.Variable(n_slots, nonneg=True, name="inflow"), cp.Variable(n_slots, nonneg=True, name="outflow"),
                    free, mode, isolated, to_slot @ slices, Knobs.of(data), slot_of_slice, borrow=borrow,
                    borrowed=borrowed, iso_affine=iso_affine)


@dataclass
class Term:
    """A named group of constraints.  ``elements`` names the entries of a vectorized term (one per bucket, say):
    entry i of each of its constraints belongs to ``elements[i]`` (the binding-constraint list reports them apart).
    """

    name: str
    kind: str
    constraints: list[cp.Constraint] = field(default_factory=list)
    elements: list[str] | None = None
