"""Covariance estimators: hand-derived numbers, scikit-learn equality, PSD repair and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.covariance import OAS, LedoitWolf

from risk_models.errors import RiskModelError
from risk_models.estimators import (
    EWMACovariance,
    SampleCovariance,
    ShrunkCovariance,
    annualize,
    ewma_volatility,
    half_life_to_lambda,
    lambda_to_half_life,
    nearest_psd,
    scale_to_horizon,
)

THREE = np.array([[0.01, 0.02], [-0.02, 0.01], [0.03, -0.01]])


def test_sample_covariance_of_a_toy_history() -> None:
    est = SampleCovariance().fit(np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 9.0]]))
    # deviations (-1, 0, 1) and (-3, -1, 4): var 2/2, 26/2, cov 7/2
    np.testing.assert_allclose(est.covariance_, [[1.0, 3.5], [3.5, 13.0]], rtol=1e-14)
    np.testing.assert_allclose(est.mean_, [2.0, 5.0])
    assert est.n_observations_ == 3


def test_ewma_recursion_by_hand() -> None:
    est = EWMACovariance(0.94, seed_obs=1).fit(THREE)
    # Σ0 = r0 r0ᵀ; Σ1 = Σ0; Σ2 = .94 Σ1 + .06 r1 r1ᵀ = [[1.18, 1.76], [1.76, 3.82]]e-4;
    # Σ3 = .94 Σ2 + .06 r2 r2ᵀ = [[1.6492, 1.4744], [1.4744, 3.6508]]e-4
    np.testing.assert_allclose(est.covariance_, [[1.6492e-4, 1.4744e-4], [1.4744e-4, 3.6508e-4]], rtol=1e-12)
    assert est.lam_ == 0.94
    np.testing.assert_array_equal(est.mean_, [0.0, 0.0])
    vol = ewma_volatility(THREE, 0.94, seed_obs=1, include_forecast=True)
    np.testing.assert_allclose(vol[:, 0], np.sqrt([1e-4, 1e-4, 1.18e-4, 1.6492e-4]), rtol=1e-12)
    np.testing.assert_allclose(ewma_volatility(THREE, 0.94, seed_obs=1), vol[:-1])
    # default seed: mean square of the first (up to 20) returns
    seed = np.mean(THREE[:, 0] ** 2)
    assert ewma_volatility(THREE[:, :1])[0, 0] == pytest.approx(np.sqrt(seed), rel=1e-14)


def test_riskmetrics_lambda_is_a_half_life_of_11_2_observations() -> None:
    assert lambda_to_half_life(0.94) == pytest.approx(11.2, abs=0.005)
    assert half_life_to_lambda(11.2) == pytest.approx(0.94, abs=1e-4)
    assert half_life_to_lambda(1.0) == 0.5
    x = np.random.default_rng(1).normal(0, 0.02, (50, 2))
    by_half_life = EWMACovariance(half_life=lambda_to_half_life(0.94)).fit(x)
    assert by_half_life.lam_ == pytest.approx(0.94, rel=1e-14)
    np.testing.assert_allclose(by_half_life.covariance_, EWMACovariance().fit(x).covariance_, rtol=1e-12)
    with pytest.raises(RiskModelError, match="both lam and half_life"):
        EWMACovariance(0.9, half_life=5).fit(x)
    with pytest.raises(RiskModelError, match=r"must lie in \(0, 1\)"):
        EWMACovariance(1.0).fit(x)


@pytest.mark.parametrize(("method", "cls"), [("ledoit_wolf", LedoitWolf), ("oas", OAS)])
def test_shrunk_covariance_equals_scikit_learn(method: str, cls: type) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 1)) * 0.03 + rng.normal(size=(60, 5)) * 0.01 * np.arange(1, 6)   # one common factor
    est = ShrunkCovariance(method).fit(x)
    ref = cls().fit(x)
    np.testing.assert_array_equal(est.covariance_, ref.covariance_)
    np.testing.assert_array_equal(est.mean_, ref.location_)
    assert est.shrinkage_ == ref.shrinkage_
    assert 0.0 < est.shrinkage_ < 1.0
    with pytest.raises(RiskModelError, match="unknown shrinkage method 'lw'"):
        ShrunkCovariance("lw").fit(x)


def test_nearest_psd_of_an_indefinite_matrix() -> None:
    m = np.array([[1.0, 2.0], [2.0, 1.0]])          # eigenvalues 3 and -1
    fixed = nearest_psd(m)
    np.testing.assert_allclose(fixed, [[1.5, 1.5], [1.5, 1.5]], rtol=1e-12)
    assert np.linalg.eigvalsh(fixed).min() >= -1e-12
    floored = nearest_psd(m, eps=0.1)
    assert np.linalg.eigvalsh(floored).min() == pytest.approx(0.1, rel=1e-9)
    # closest in Frobenius norm: clipping at 0 beats every other clip level and random PSD matrices
    best = np.linalg.norm(m - fixed)
    assert best == pytest.approx(1.0, rel=1e-12)
    for eps in (1e-3, 0.1, 0.5):
        assert np.linalg.norm(m - nearest_psd(m, eps)) > best
    rng = np.random.default_rng(0)
    for _ in range(200):
        b = rng.normal(size=(2, 2))
        assert np.linalg.norm(m - b @ b.T) >= best
    np.testing.assert_allclose(nearest_psd(np.array([[2.0, 0.0], [1.0, 2.0]])), [[2.0, 0.5], [0.5, 2.0]])
    with pytest.raises(RiskModelError, match="eps"):
        nearest_psd(m, eps=-1)


def test_annualize_and_horizon_scaling() -> None:
    daily = np.array([[4e-4, 1e-4], [1e-4, 9e-4]])
    np.testing.assert_allclose(annualize(daily), daily * 365)
    np.testing.assert_allclose(annualize(daily, 252), daily * 252)
    np.testing.assert_allclose(np.sqrt(np.diag(scale_to_horizon(daily, 4))), [0.04, 0.06])
    with pytest.raises(RiskModelError, match="horizon"):
        scale_to_horizon(daily, 0)


def test_estimators_reject_bad_returns() -> None:
    with pytest.raises(RiskModelError, match="NaN"):
        SampleCovariance().fit(np.array([[0.1, np.nan], [0.2, 0.1]]))
    with pytest.raises(RiskModelError, match="1 observations, at least 2"):
        SampleCovariance().fit(np.array([[0.1, 0.2]]))
    with pytest.raises(RiskModelError, match="shape"):
        EWMACovariance().fit(np.zeros((3, 2, 2)))


ESTIMATORS = [SampleCovariance(), EWMACovariance(), EWMACovariance(half_life=3), ShrunkCovariance("ledoit_wolf"),
              ShrunkCovariance("oas")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=st.integers(3, 40).flatmap(lambda t: st.integers(1, 4).flatmap(
    lambda a: arrays(np.float64, (t, a), elements=st.floats(-0.5, 0.5, allow_subnormal=False)))))
def test_covariances_are_symmetric_psd(x: np.ndarray) -> None:
    for est in ESTIMATORS:
        cov = est.fit(x).covariance_
        assert cov.shape == (x.shape[1], x.shape[1])
        np.testing.assert_array_equal(cov, cov.T)
        assert np.linalg.eigvalsh(cov).min() >= -1e-12 * max(1.0, np.abs(cov).max())
