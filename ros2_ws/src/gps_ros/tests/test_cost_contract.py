"""The cost module's contract beyond its values: the action cost relative to a state reference
(position-mode commands) against its closed form and finite differences, the defaults of the
distance cost, and the exact errors of every check (what a config author reads)."""
import numpy as np
import pytest

from gps_ros.cost import (ActionCost, CostDerivatives, EEPointsCost, StateCost, WeightedSumCost,
                          add_derivatives, ramp_weights)


def _fd_grad(f, z, h=1e-6):
    g = np.zeros_like(z)
    for i in range(z.size):
        e = np.zeros_like(z)
        e.flat[i] = h
        g.flat[i] = (f(z + e) - f(z - e)) / (2 * h)
    return g


def test_action_cost_with_a_reference_is_half_the_weighted_square_of_u_minus_cx():
    """l = ½ Σ_i w_i (u − C x)_i²: lx = −Cᵀ W r, lu = W r, lxx = Cᵀ W C, luu = W, lux = −W C;
    checked against the formula and central differences of l."""
    rng = np.random.default_rng(0)
    N, T, dX, dU = 2, 3, 4, 2
    w = np.array([0.5, 2.0])
    C = rng.standard_normal((dU, dX))
    X, U = rng.standard_normal((N, T, dX)), rng.standard_normal((N, T, dU))
    d = ActionCost(w, reference=C).eval(X, U)
    R = U - X @ C.T
    np.testing.assert_allclose(d.l, 0.5 * (w * R ** 2).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(d.lu, w * R, rtol=1e-12)
    np.testing.assert_allclose(d.lx, -(w * R) @ C, rtol=1e-12)
    np.testing.assert_allclose(d.lxx[0, 0], C.T @ np.diag(w) @ C, rtol=1e-12)
    np.testing.assert_allclose(d.luu[1, 2], np.diag(w), rtol=1e-12)
    np.testing.assert_allclose(d.lux[1, 1], -np.diag(w) @ C, rtol=1e-12)
    x, u = X[1, 2], U[1, 2]
    lval = lambda xx, uu: 0.5 * float((w * (uu - C @ xx) ** 2).sum())     # noqa: E731
    np.testing.assert_allclose(_fd_grad(lambda xx: lval(xx, u), x), d.lx[1, 2], atol=1e-7)
    np.testing.assert_allclose(_fd_grad(lambda uu: lval(x, uu), u), d.lu[1, 2], atol=1e-7)


@pytest.mark.parametrize("reference, message", [
    (np.ones((2, 3, 1)), r"ActionCost reference must be a finite \(2, dX\) matrix, got shape \(2, 3, 1\)"),
    (np.ones((3, 4)), r"ActionCost reference must be a finite \(2, dX\) matrix, got shape \(3, 4\)"),
    (np.full((2, 4), np.nan), r"ActionCost reference must be a finite \(2, dX\) matrix, got shape \(2, 4\)"),
])
def test_action_cost_refuses_a_bad_reference(reference, message):
    with pytest.raises(ValueError, match="^" + message + "$"):
        ActionCost([1.0, 1.0], reference=reference)


def test_action_cost_checks_its_inputs():
    with pytest.raises(ValueError, match=r"^ActionCost weights must not be empty$"):
        ActionCost([])
    ActionCost([0.0])                                                  # a zero weight is allowed
    with pytest.raises(ValueError, match=r"^ActionCost reference has 4 columns but X has dX=3$"):
        ActionCost([1.0, 1.0], reference=np.ones((2, 4))).eval(np.zeros((1, 2, 3)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"^ActionCost weights must be non-negative, got \[1.0, -1.0\]$"):
        ActionCost([1.0, -1.0])
    with pytest.raises(ValueError, match=r"^ActionCost weights must be finite$"):
        ActionCost([1.0, np.inf])
    with pytest.raises(ValueError, match=r"^ActionCost weights must be 1-D, got shape \(1, 2\)$"):
        ActionCost([[1.0, 1.0]])


@pytest.mark.parametrize("X, U, message", [
    (np.zeros((2, 3)), np.zeros((2, 3, 1)), r"X must have shape \(N, T, dX\), got shape \(2, 3\)"),
    (np.zeros((2, 3, 4)), np.zeros((2, 3)), r"U must have shape \(N, T, dU\), got shape \(2, 3\)"),
    (np.zeros((2, 3, 4)), np.zeros((2, 5, 1)), r"X and U disagree on \(N, T\): \(2, 3\) vs \(2, 5\)"),
])
def test_trajectories_of_the_wrong_shape_are_refused(X, U, message):
    with pytest.raises(ValueError, match="^" + message + "$"):
        ActionCost([1.0]).eval(X, U)


def test_distance_cost_defaults_are_the_quadratic_half_square():
    """Defaults l1 = 0, l2 = 1, alpha = 1e-5, constant ramp, final multiplier 1: l = ½|d|²."""
    rng = np.random.default_rng(1)
    X, U = rng.standard_normal((2, 4, 5)), np.zeros((2, 4, 1))
    d = StateCost([1, 3], [0.2, -0.1]).eval(X, U)
    np.testing.assert_allclose(d.l, 0.5 * ((X[..., [1, 3]] - [0.2, -0.1]) ** 2).sum(-1), rtol=1e-12)
    explicit = StateCost([1, 3], [0.2, -0.1], l1=0.0, l2=1.0, alpha=1e-5, ramp="constant",
                         final_multiplier=1.0).eval(X, U)
    for a, b in zip(d, explicit):
        np.testing.assert_array_equal(a, b)
    e = EEPointsCost([1, 3]).eval(X, U)
    np.testing.assert_allclose(e.l, 0.5 * (X[..., [1, 3]] ** 2).sum(-1), rtol=1e-12)
    # alpha's default matters once l1 is on: sqrt(1e-5 + s)
    s = (X[..., [1, 3]] ** 2).sum(-1)
    np.testing.assert_allclose(EEPointsCost([1, 3], l1=1.0, l2=0.0).eval(X, U).l,
                               np.sqrt(1e-5 + s), rtol=1e-12)


@pytest.mark.parametrize("kw, message", [
    ({"indices": [[0, 1]]}, r"indices must be a non-empty 1-D integer array, got shape \(1, 2\)"),
    ({"indices": []}, r"indices must be a non-empty 1-D integer array, got shape \(0,\)"),
    ({"indices": [0.0, 1.0]}, r"indices must be integers, got dtype float64"),
    ({"indices": [0, -1]}, r"indices must be non-negative, got \[0, -1\]"),
    ({"indices": [1, 1]}, r"indices must be distinct, got \[1, 1\]"),
    ({"target": [0.0]}, r"target must have shape \(2,\) or \(T, 2\), got shape \(1,\)"),
    ({"target": [0.0, np.nan]}, r"target must be finite"),
    ({"wp": [1.0]}, r"wp has length 1, expected 2"),
    ({"l1": -1.0}, r"l1 must be a finite non-negative number, got -1.0"),
    ({"l2": np.inf}, r"l2 must be a finite non-negative number, got inf"),
    ({"final_multiplier": -2}, r"final_multiplier must be a finite non-negative number, got -2"),
    ({"l1": 1.0, "alpha": 0.0},
     r"alpha must be > 0 when l1 > 0 \(the l1 term is not differentiable at d = 0\)"),
])
def test_distance_cost_errors_name_the_setting(kw, message):
    args = {"indices": [0, 1], "target": [0.0, 0.0], **kw}
    with pytest.raises(ValueError, match="^" + message + "$"):
        StateCost(**args)


@pytest.mark.parametrize("T", [0, 2.5, True, -3])
def test_ramp_needs_a_positive_integer_horizon(T):
    with pytest.raises(ValueError, match=f"^T must be a positive integer, got {T!r}$"):
        ramp_weights("linear", T)


def test_ramp_final_multiplier_scales_the_last_step():
    np.testing.assert_allclose(ramp_weights("linear", 4, 3.0), [0.25, 0.5, 0.75, 3.0])
    with pytest.raises(ValueError, match=r"^final_multiplier must be a finite non-negative number"):
        ramp_weights("linear", 4, np.nan)


def test_derivative_containers_refuse_what_they_cannot_do():
    a = CostDerivatives.zeros(2, 3, 4, 1)
    b = CostDerivatives.zeros(2, 3, 5, 1)
    with pytest.raises(ValueError, match=r"^cannot add derivatives: field lx has shapes "
                                         r"\(2, 3, 4\) and \(2, 3, 5\)$"):
        add_derivatives(a, b)
    with pytest.raises(ValueError, match=r"^mean\(\) over zero trials is undefined$"):
        CostDerivatives.zeros(0, 3, 4, 1).mean()
    with pytest.raises(ValueError, match=r"^mean\(\) needs batched derivatives with l of shape "
                                         r"\(N, T\), got shape \(3,\)$"):
        a.mean().mean()
    with pytest.raises(ValueError, match=r"^scale factor must be finite, got nan$"):
        a.scaled(np.nan)
    m = CostDerivatives.zeros(1, 3, 4, 1).mean()                 # one trial: fine
    assert m.l.shape == (3,)
    with pytest.raises(ValueError, match=r"^WeightedSumCost needs at least one cost$"):
        WeightedSumCost([], [])
    with pytest.raises(ValueError, match=r"^WeightedSumCost got 1 costs but 2 weights$"):
        WeightedSumCost([ActionCost([1.0])], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"^cost 3 has no eval\(X, U\) method$"):
        WeightedSumCost([3], [1.0])
