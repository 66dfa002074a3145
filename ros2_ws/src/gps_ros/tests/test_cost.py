"""Tests for gps_ros.cost: analytic derivatives vs finite differences, ramps, sums, validation."""
import numpy as np
import pytest

from gps_ros.cost import (
    ActionCost,
    CostDerivatives,
    EEPointsCost,
    StateCost,
    WeightedSumCost,
    add_derivatives,
    ramp_weights,
)

N, T, DX, DU = 3, 4, 6, 2
EPS = 1e-6


def _random_XU(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, T, DX)), rng.normal(size=(N, T, DU))


def _X_with_offsets(seed, indices, target):
    """X whose d = x[indices] - target has entries of magnitude in [0.5, 1.5] (away from 0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, T, DX))
    k = len(indices)
    d = rng.choice([-1.0, 1.0], size=(N, T, k)) * rng.uniform(0.5, 1.5, size=(N, T, k))
    X[:, :, indices] = np.broadcast_to(target, (N, T, k)) + d
    U = rng.normal(size=(N, T, DU))
    return X, U


def _fd_check(cost, X, U, rtol=1e-5, atol=1e-6):
    """Compare every analytic derivative against central finite differences.

    The costs are separable in time, so perturbing coordinate i of every (n, t)
    at once yields the i-th partial derivative for all (n, t) in one shot.
    """
    d = cost.eval(X, U)
    assert d.l.shape == (N, T)
    assert d.lx.shape == (N, T, DX)
    assert d.lu.shape == (N, T, DU)
    assert d.lxx.shape == (N, T, DX, DX)
    assert d.luu.shape == (N, T, DU, DU)
    assert d.lux.shape == (N, T, DU, DX)
    for f in d:
        assert f.dtype == np.float64
        assert np.all(np.isfinite(f))

    lx_fd = np.zeros_like(d.lx)
    lxx_fd = np.zeros_like(d.lxx)
    lux_fd = np.zeros_like(d.lux)  # d lu / d x
    for i in range(DX):
        Xp, Xm = X.copy(), X.copy()
        Xp[:, :, i] += EPS
        Xm[:, :, i] -= EPS
        dp, dm = cost.eval(Xp, U), cost.eval(Xm, U)
        lx_fd[:, :, i] = (dp.l - dm.l) / (2 * EPS)
        lxx_fd[:, :, :, i] = (dp.lx - dm.lx) / (2 * EPS)
        lux_fd[:, :, :, i] = (dp.lu - dm.lu) / (2 * EPS)

    lu_fd = np.zeros_like(d.lu)
    luu_fd = np.zeros_like(d.luu)
    lxu_fd = np.zeros((N, T, DX, DU))  # d lx / d u
    for a in range(DU):
        Up, Um = U.copy(), U.copy()
        Up[:, :, a] += EPS
        Um[:, :, a] -= EPS
        dp, dm = cost.eval(X, Up), cost.eval(X, Um)
        lu_fd[:, :, a] = (dp.l - dm.l) / (2 * EPS)
        luu_fd[:, :, :, a] = (dp.lu - dm.lu) / (2 * EPS)
        lxu_fd[:, :, :, a] = (dp.lx - dm.lx) / (2 * EPS)

    np.testing.assert_allclose(d.lx, lx_fd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.lu, lu_fd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.lxx, lxx_fd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.luu, luu_fd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.lux, lux_fd, rtol=rtol, atol=atol)
    np.testing.assert_allclose(d.lux, np.swapaxes(lxu_fd, -1, -2), rtol=rtol, atol=atol)
    # symmetric Hessians
    np.testing.assert_allclose(d.lxx, np.swapaxes(d.lxx, -1, -2), rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.luu, np.swapaxes(d.luu, -1, -2), rtol=0, atol=1e-12)
    return d


# ----------------------------------------------------------------------------- ramps
def test_ramp_weights_values():
    np.testing.assert_allclose(ramp_weights("constant", 4), [1, 1, 1, 1])
    np.testing.assert_allclose(ramp_weights("linear", 4), [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(ramp_weights("quadratic", 4), [0.0625, 0.25, 0.5625, 1.0])
    np.testing.assert_allclose(ramp_weights("final_only", 4), [0, 0, 0, 1])
    np.testing.assert_allclose(ramp_weights("constant", 3, final_multiplier=10.0), [1, 1, 10])
    np.testing.assert_allclose(ramp_weights("linear", 2, final_multiplier=3.0), [0.5, 3.0])
    np.testing.assert_allclose(ramp_weights("quadratic", 2, final_multiplier=2.0), [0.25, 2.0])
    np.testing.assert_allclose(ramp_weights("final_only", 3, final_multiplier=5.0), [0, 0, 5])
    np.testing.assert_allclose(ramp_weights("linear", 1), [1.0])
    assert ramp_weights("constant", 5).shape == (5,)


def test_ramp_weights_errors():
    with pytest.raises(ValueError, match="constant, linear, quadratic, final_only"):
        ramp_weights("exponential", 4)
    with pytest.raises(ValueError):
        ramp_weights("linear", 0)
    with pytest.raises(ValueError):
        ramp_weights("linear", 4, final_multiplier=-1.0)


# ----------------------------------------------------------------------------- action cost
def test_action_cost_values_and_derivatives():
    X, U = _random_XU(0)
    cost = ActionCost([0.3, 2.0])
    d = _fd_check(cost, X, U)
    np.testing.assert_allclose(d.l, 0.5 * (0.3 * U[..., 0] ** 2 + 2.0 * U[..., 1] ** 2))
    np.testing.assert_allclose(d.luu[1, 2], np.diag([0.3, 2.0]))
    assert not np.any(d.lx) and not np.any(d.lxx) and not np.any(d.lux)


# ----------------------------------------------------------------------------- state cost
STATE_COMBOS = [
    dict(l1=0.0, l2=1.0, alpha=1e-5),
    dict(l1=1.0, l2=0.0, alpha=1e-2),
    dict(l1=0.7, l2=1.3, alpha=1e-3),
    dict(l1=1.0, l2=0.0, alpha=1e-8),  # l1-only with sharp Hessian; d kept away from 0
    dict(l1=2.0, l2=0.5, alpha=1.0),
]


@pytest.mark.parametrize("combo", STATE_COMBOS)
@pytest.mark.parametrize("ramp", ["constant", "linear", "quadratic", "final_only"])
def test_state_cost_fd(combo, ramp):
    indices = np.array([4, 0, 2])
    target = np.array([0.3, -0.2, 0.5])
    X, U = _X_with_offsets(1, indices, target)
    cost = StateCost(indices, target, wp=[1.0, 2.0, 0.5], ramp=ramp, final_multiplier=3.0, **combo)
    d = _fd_check(cost, X, U)
    # derivatives only on the selected indices, none on actions
    others = [1, 3, 5]
    assert not np.any(d.lx[:, :, others])
    assert not np.any(d.lxx[:, :, others, :]) and not np.any(d.lxx[:, :, :, others])
    assert not np.any(d.lu) and not np.any(d.luu) and not np.any(d.lux)


def test_state_cost_time_varying_target_fd():
    rng = np.random.default_rng(5)
    indices = np.array([1, 5])
    target = rng.normal(size=(T, 2))
    X, U = _X_with_offsets(2, indices, target[None])
    cost = StateCost(indices, target, wp=[0.5, 1.5], l1=0.4, l2=1.0, alpha=1e-4, ramp="linear")
    _fd_check(cost, X, U)
    with pytest.raises(ValueError, match="T="):
        cost.eval(X[:, :3], U[:, :3])


def test_state_cost_closed_form_value():
    # k = 1, wp = 2, d = 3: s = 36
    X = np.zeros((1, 2, DX))
    X[..., 3] = 4.0
    U = np.zeros((1, 2, DU))
    cost = StateCost([3], [1.0], wp=[2.0], l1=0.5, l2=1.0, alpha=0.25, ramp="linear", final_multiplier=2.0)
    d = cost.eval(X, U)
    base = 0.5 * 36 + 0.5 * np.sqrt(36.25)
    np.testing.assert_allclose(d.l, [[0.5 * base, 2.0 * base]])
    grad = (1.0 + 0.5 / np.sqrt(36.25)) * 4 * 3
    np.testing.assert_allclose(d.lx[0, :, 3], [0.5 * grad, 2.0 * grad])
    hess = (1.0 + 0.5 / np.sqrt(36.25)) * 4 - 0.5 * 12**2 / 36.25**1.5
    np.testing.assert_allclose(d.lxx[0, :, 3, 3], [0.5 * hess, 2.0 * hess])


def test_state_cost_at_zero_distance():
    X = np.zeros((1, 1, DX))
    U = np.zeros((1, 1, DU))
    cost = StateCost([0, 1], [0.0, 0.0], l1=1.0, l2=1.0, alpha=0.04)
    d = cost.eval(X, U)
    np.testing.assert_allclose(d.l, [[0.2]])
    assert not np.any(d.lx)
    np.testing.assert_allclose(d.lxx[0, 0, :2, :2], (1.0 + 1.0 / 0.2) * np.eye(2))


@pytest.mark.parametrize("mag", [1e6, 1e200])
def test_state_cost_finite_for_huge_inputs(mag):
    X = np.zeros((2, 3, DX))
    X[..., 0] = mag
    X[..., 1] = -mag
    U = np.zeros((2, 3, DU))
    # l1-only: mathematically finite for any finite d
    d = StateCost([0, 1], [0.0, 0.0], wp=[1.0, 2.0], l1=1.0, l2=0.0, alpha=1e-5).eval(X, U)
    for f in d:
        assert np.all(np.isfinite(f))
    np.testing.assert_allclose(d.l, np.sqrt(5.0) * mag, rtol=1e-12)
    np.testing.assert_allclose(d.lx[..., :2], np.broadcast_to([1.0, -4.0], (2, 3, 2)) / np.sqrt(5.0), rtol=1e-12)
    if mag == 1e6:
        d2 = StateCost([0, 1], [0.0, 0.0], l1=1.0, l2=1.0, alpha=1e-5).eval(X, U)
        for f in d2:
            assert np.all(np.isfinite(f))
        np.testing.assert_allclose(d2.l, 0.5 * 2e12 + np.sqrt(1e-5 + 2e12), rtol=1e-12)


# ----------------------------------------------------------------------------- EE points
@pytest.mark.parametrize("combo", STATE_COMBOS)
def test_ee_points_cost_matches_state_cost(combo):
    ee = np.array([3, 4, 5])
    X, U = _X_with_offsets(3, ee, np.zeros(3))
    wp = [1.0, 0.5, 2.0]
    cost = EEPointsCost(ee, wp=wp, ramp="quadratic", final_multiplier=5.0, **combo)
    d = _fd_check(cost, X, U)
    ref = StateCost(ee, np.zeros(3), wp=wp, ramp="quadratic", final_multiplier=5.0, **combo).eval(X, U)
    for a, b in zip(d, ref):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- sums / containers
def _sum_components():
    return [
        ActionCost([0.1, 0.2]),
        StateCost([0, 1], [0.1, 0.2], l1=0.5, l2=1.0, alpha=1e-3, ramp="linear"),
        EEPointsCost([3, 4, 5], l1=1.0, l2=0.0, alpha=1e-2, final_multiplier=10.0),
    ]


def test_weighted_sum_cost():
    X, U = _X_with_offsets(4, np.array([3, 4, 5]), np.zeros(3))
    comps = _sum_components()
    weights = [2.0, 0.5, 3.0]
    cost = WeightedSumCost(comps, weights)
    d = _fd_check(cost, X, U)
    parts = [c.eval(X, U) for c in comps]
    for field in range(6):
        expected = sum(w * p[field] for w, p in zip(weights, parts))
        np.testing.assert_allclose(d[field], expected, rtol=1e-13, atol=1e-13)


def test_derivative_helpers():
    X, U = _random_XU(6)
    a = ActionCost([1.0, 2.0]).eval(X, U)
    b = StateCost([2], [0.0]).eval(X, U)
    s = add_derivatives(a.scaled(2.0), b)
    np.testing.assert_allclose(s.l, 2.0 * a.l + b.l)
    np.testing.assert_allclose(s.lxx, b.lxx)
    np.testing.assert_allclose(s.luu, 2.0 * a.luu)
    m = s.mean()
    assert isinstance(m, CostDerivatives)
    assert m.l.shape == (T,) and m.lx.shape == (T, DX) and m.lu.shape == (T, DU)
    assert m.lxx.shape == (T, DX, DX) and m.luu.shape == (T, DU, DU) and m.lux.shape == (T, DU, DX)
    np.testing.assert_allclose(m.lu, s.lu.mean(axis=0))
    with pytest.raises(ValueError):
        m.mean()
    with pytest.raises(ValueError):
        add_derivatives(a, CostDerivatives.zeros(N, T, DX + 1, DU))


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make",
    [
        lambda: ActionCost([1.0, -0.1]),
        lambda: ActionCost([[1.0, 1.0]]),
        lambda: StateCost([0, 1], [0.0]),  # target length mismatch
        lambda: StateCost([0, 1], [0.0, 0.0], wp=[1.0]),  # wp length mismatch
        lambda: StateCost([0, 1], [0.0, 0.0], wp=[1.0, -1.0]),
        lambda: StateCost([0, 0], [0.0, 0.0]),  # duplicate indices
        lambda: StateCost([-1], [0.0]),
        lambda: StateCost([0.5], [0.0]),
        lambda: StateCost([0], [0.0], l1=-1.0),
        lambda: StateCost([0], [0.0], l2=-1.0),
        lambda: StateCost([0], [0.0], l1=1.0, alpha=0.0),
        lambda: StateCost([0], [0.0], ramp="cubic"),
        lambda: StateCost([0], [0.0], final_multiplier=-2.0),
        lambda: StateCost([0], [np.nan]),
        lambda: EEPointsCost([0, 1], wp=[1.0, -2.0]),
        lambda: WeightedSumCost([ActionCost([1.0, 1.0])], [1.0, 2.0]),
        lambda: WeightedSumCost([ActionCost([1.0, 1.0])], [-1.0]),
        lambda: WeightedSumCost([], []),
        lambda: WeightedSumCost([object()], [1.0]),
    ],
)
def test_constructor_validation(make):
    with pytest.raises(ValueError):
        make()


def test_eval_validation():
    X, U = _random_XU(7)
    with pytest.raises(ValueError, match="dU"):
        ActionCost([1.0, 1.0, 1.0]).eval(X, U)
    with pytest.raises(ValueError, match="out of range"):
        StateCost([DX], [0.0]).eval(X, U)
    with pytest.raises(ValueError):
        StateCost([0], [0.0]).eval(X[0], U[0])
    with pytest.raises(ValueError):
        StateCost([0], [0.0]).eval(X, U[:, :2])
    with pytest.raises(ValueError):
        WeightedSumCost([ActionCost([1.0, 1.0])], [1.0]).eval(X[:2], U)
