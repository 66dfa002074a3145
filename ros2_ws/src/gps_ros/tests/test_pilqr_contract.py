"""PILQR beyond the toy system's zero offsets: the model's prediction of each sample's cost with a
feed-forward term, a drift and a constant cost, the temperature floor from the full cost (a small
residual moves the controller little), and the fields of its result."""
import numpy as np
import pytest

from gps_ros.algorithm import KLConstrainedLQR
from gps_ros.config import AlgorithmConfig
from gps_ros.control import LinearGaussianController, QuadraticCost, forward_pass
from gps_ros.control.pi2 import PI2
from gps_ros.control.pilqr import PILQR, predicted_costs, residual_ratio
from gps_ros.dynamics.linear_gaussian import LinearGaussianDynamics

from test_traj_opt import traj

T, DX, DU = 10, 2, 1
A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.005], [0.1]])
DRIFT = np.array([0.01, -0.03])


def system():
    Fm = np.zeros((T, DX, DX + DU))
    Fm[:-1] = np.hstack([A, B])
    fv = np.zeros((T, DX))
    fv[:-1] = DRIFT
    cov = np.zeros((T, DX, DX))
    cov[:-1] = 1e-8 * np.eye(DX)
    return LinearGaussianDynamics(Fm, fv, cov, np.array([1.0, 0.0]), 1e-6 * np.eye(DX))


def cost():
    H = np.zeros((T, 3, 3))
    H[:, 0, 0], H[:, 1, 1], H[:, 2, 2] = 1.0, 0.1, 0.01
    cv = np.zeros((T, 3))
    cv[:, 0] = 0.2
    return QuadraticCost(H, cv, np.full(T, 0.7))


def controller():
    K = np.broadcast_to([[-1.0, -0.5]], (T, 1, 2)).copy()
    return LinearGaussianController(K, np.full((T, 1), 0.3), np.broadcast_to(np.eye(1), (T, 1, 1)).copy())


def samples(ctrl, n=8, seed=0):
    rng = np.random.default_rng(seed)
    X, U = np.zeros((n, T, DX)), np.zeros((n, T, DU))
    for i in range(n):
        x = np.array([1.0, 0.0]) + 0.1 * rng.standard_normal(2)
        for t in range(T):
            u = ctrl.act(t, x, rng.standard_normal(1))
            X[i, t], U[i, t] = x, u
            x = A @ x + B @ u + DRIFT
    return X, U


def exact_costs(X, U, c):
    xu = np.concatenate([X, U], 2)
    return 0.5 * np.einsum("nti,tij,ntj->nt", xu, c.Cm, xu) + xu @ c.cv[0] + c.cc


def test_the_model_predicts_each_samples_cost_exactly_on_the_true_linear_system():
    """With the true (noise-free) model and an exactly quadratic cost the prediction is the cost:
    the rollout uses the controller's offset k, the model's drift f and the cost's constant."""
    ctrl, dyn, c = controller(), system(), cost()
    X, U = samples(ctrl)
    true = exact_costs(X, U, c)
    np.testing.assert_allclose(predicted_costs(dyn, c, ctrl, X, U), true, rtol=1e-6, atol=1e-6)
    assert residual_ratio(dyn, c, ctrl, X, U, true) < 1e-6


def test_residual_ratio_is_the_missed_share_of_the_cost():
    ctrl, dyn, c = controller(), system(), cost()
    X, U = samples(ctrl)
    true = exact_costs(X, U, c)
    missed = np.zeros_like(true)
    missed[:, -1] = 0.25 * np.abs(true).sum(1)                # a quarter of each sample's |cost|
    assert np.all(true > 0)
    # mean Σ|r| / mean Σ|c| = 0.25 / (1 + 0.25)
    assert residual_ratio(dyn, c, ctrl, X, U, true + missed) == pytest.approx(0.2, rel=1e-5)


def _pilqr_step(scale, kl_step=0.5):
    ctrl, dyn, c = controller(), system(), cost()
    X, U = samples(ctrl, n=20)
    rng = np.random.default_rng(5)
    step_costs = exact_costs(X, U, c) + scale * rng.standard_normal((20, T))
    lqr = KLConstrainedLQR(AlgorithmConfig())
    pilqr = PILQR(lqr, PI2(kl_step=kl_step))
    (res,) = pilqr.optimize([dyn], [c], [ctrl], [0.5 * T], [1.0], samples=[traj(X, U)],
                            sample_costs=[step_costs])
    (ref,) = lqr.optimize([dyn], [c], [ctrl], [0.5 * T], [1.0])
    return res, ref, dyn


def test_a_residual_small_next_to_the_cost_moves_the_controller_little():
    """The PI² temperature is at least the one that spends the budget on the full cost-to-go: a
    residual of 1e-4 (the costs are ~1) leaves the weights nearly uniform and the controller at
    the LQR step; a residual as large as the cost's spread spends a real part of the budget."""
    small, ref, _ = _pilqr_step(1e-4)
    assert small.weight_kl.max() < 1e-3
    np.testing.assert_allclose(small.controller.k, ref.controller.k, atol=1e-3)
    large, _, _ = _pilqr_step(1.0)
    assert large.weight_kl.max() > 0.1


def test_pilqr_result_fields():
    res, ref, dyn = _pilqr_step(1.0)
    c = res.controller
    mu, sigma = forward_pass(dyn.Fm[None], dyn.fv[None], dyn.dyn_covar[None], dyn.x0mu[None],
                             dyn.x0sigma[None], c.K[None], c.k[None], c.pol_covar[None])
    np.testing.assert_allclose(res.mu, mu[0])
    np.testing.assert_allclose(res.sigma, sigma[0])
    assert res.eta == ref.eta and res.epsilon == ref.epsilon == 0.5 * T
    assert res.pi2_epsilon == 0.5 and res.etas.shape == (T,) and np.all(res.etas > 0)
    assert res.iterations > ref.iterations and res.converged
    np.testing.assert_array_equal(c.K, ref.controller.K)      # PI² keeps the LQR's gains
