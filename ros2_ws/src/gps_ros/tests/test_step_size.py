"""The step-size rules, the expected cost and the KL-constrained LQR at an intermediate η, each
against an independent reference: hand-computed values of the formula of Levine & Abbeel (2014,
§3.1), Monte Carlo under the linear-Gaussian model, the exact value of a quadratic cost, and random
perturbations of the LQR's controller that must not lower its Lagrangian."""
import numpy as np
import pytest

from gps_ros.algorithm import LQRFLM, MDGPS, ConditionState, step_multiplier
from gps_ros.control import (LinearGaussianController, QuadraticCost, estimate_cost, forward_pass,
                             kl_constrained_lqr, traj_kl)
from gps_ros.control.lqr import expected_cost

from test_control import quadratic_cost, random_controller, random_system


# --- step_multiplier: the rule on hand-made cost sequences ----------------------------------------
# new multiplier = predicted / (2 max(1e-4, predicted - actual)), clipped to [0.1, 5], times the old
# multiplier, clipped to [min_mult, max_mult]; predicted = L(p_prev) - L_pred(p_new),
# actual = L(p_prev) - L_actual(p_new).
@pytest.mark.parametrize("prev, pred, actual, old, expected", [
    (10.0, 6.0, 8.0, 1.0, 1.0),      # half the predicted improvement came true: keep the step
    (10.0, 6.0, 7.0, 1.0, 2.0),      # 3 of 4 came true: 4 / (2 * 1) -> x2
    (10.0, 6.0, 10.0, 1.0, 0.5),     # nothing came true: 4 / (2 * 4) -> halve
    (10.0, 6.0, 12.0, 1.0, 4 / 12),  # the cost rose by 2: 4 / (2 * 6)
    (10.0, 6.0, 30.0, 1.0, 0.1),     # much worse: 4 / 40 = 0.1, the floor of the factor
    (10.0, 6.0, 80.0, 1.0, 0.1),     # 4 / 140 < 0.1 -> the floor
    (10.0, 6.0, 6.0, 1.0, 5.0),      # exactly as predicted: 4 / 2e-4 -> the ceiling 5
    (10.0, 6.0, 5.0, 1.0, 5.0),      # better than predicted: predicted - actual < 0 -> 1e-4 -> 5
    (10.0, 6.0, 7.0, 0.4, 0.8),      # the factor multiplies the old multiplier
    (10.0, 12.0, 9.0, 1.0, 0.1),     # the step predicted a rise: a negative factor -> the floor
    (10.0, 6.0, 6.5, 1.0, 4.0),      # 4 / (2 * 0.5)
])
def test_step_multiplier_follows_the_published_rule(prev, pred, actual, old, expected):
    got = step_multiplier(prev, pred, actual, old, 1e-3, 100.0)
    assert got == pytest.approx(expected, rel=1e-12)


def test_step_multiplier_clips_to_the_configured_bounds():
    assert step_multiplier(10.0, 6.0, 6.0, 1.0, 0.1, 2.0) == 2.0      # 5 x 1, max_mult 2
    assert step_multiplier(10.0, 6.0, 6.0, 3.0, 0.1, 10.0) == 10.0    # 5 x 3 = 15 > 10
    assert step_multiplier(10.0, 6.0, 30.0, 0.5, 0.2, 10.0) == 0.2    # 0.1 x 0.5 < 0.2
    assert step_multiplier(10.0, 6.0, 30.0, 0.5, 0.01, 10.0) == pytest.approx(0.05)
    # an estimate that is not finite shrinks the step (max(1e-4, nan) is 1e-4 in Python: without
    # the check a NaN actual cost would read as "exactly as predicted" and grow the step x5)
    for bad in (np.nan, np.inf, -np.inf):
        assert step_multiplier(10.0, 6.0, bad, 1.0, 0.01, 10.0) == pytest.approx(0.1)
        assert step_multiplier(10.0, bad, 7.0, 1.0, 0.01, 10.0) == pytest.approx(0.1)
        assert step_multiplier(bad, 6.0, 7.0, 1.0, 0.01, 10.0) == pytest.approx(0.1)


# --- _adapt_step: which three Laplace estimates each algorithm compares ---------------------------
class _Cfg:
    min_step_mult, max_step_mult, kl_step = 0.01, 100.0, 1.0


def _adapt(cls, st, ref, dyn, cost, iteration=3):
    algo = cls.__new__(cls)          # the rule only reads cfg (and MDGPS the iteration)
    algo.cfg, algo.iteration = _Cfg(), iteration
    cls._adapt_step(algo, st, ref, dyn, cost)
    return st.step_mult


def _two_controllers_and_models(seed=0):
    rng = np.random.default_rng(seed)
    T, dX, dU = 10, 4, 2
    dyn_old, *_ = random_system(rng, T, dX, dU)
    dyn_new, *_ = random_system(rng, T, dX, dU)
    cost_old = quadratic_cost(T, dX, dU, np.eye(dX), 0.1 * np.eye(dU), rng.standard_normal(dX))
    cost_new = quadratic_cost(T, dX, dU, 2 * np.eye(dX), 0.1 * np.eye(dU), rng.standard_normal(dX))
    prev, cur, ref = (random_controller(rng, T, dX, dU) for _ in range(3))
    return dyn_old, dyn_new, cost_old, cost_new, prev, cur, ref


def _spy(monkeypatch):
    """Records the (prev_laplace, new_predicted, new_actual) the rule is given."""
    import gps_ros.algorithm as alg
    calls = []

    def spy(a, b, c, *rest):
        calls.append((a, b, c))
        return step_multiplier(a, b, c, *rest)
    monkeypatch.setattr(alg, "step_multiplier", spy)
    return calls


def test_lqrflm_step_compares_the_new_controller_under_old_and_new_model(monkeypatch):
    """LQR-FLM: L(p_prev | old model, old cost), L(p_new | old model, old cost) predicted,
    L(p_new | new model, new cost) actual (the three estimates differ by construction, so a
    swapped model, cost or controller is caught)."""
    dyn_old, dyn_new, cost_old, cost_new, prev, cur, _ = _two_controllers_and_models()
    st = ConditionState(cur, step_mult=0.7, prev_controller=prev, prev_dynamics=dyn_old,
                        prev_cost=cost_old)
    a = estimate_cost(prev, dyn_old, cost_old)
    b = estimate_cost(cur, dyn_old, cost_old)
    c = estimate_cost(cur, dyn_new, cost_new)
    others = [estimate_cost(cur, dyn_new, cost_old), estimate_cost(cur, dyn_old, cost_new),
              estimate_cost(prev, dyn_new, cost_new)]
    assert len({round(v, 6) for v in [a, b, c, *others]}) == 6
    calls = _spy(monkeypatch)
    got = _adapt(LQRFLM, st, None, dyn_new, cost_new)
    assert calls == [pytest.approx((a, b, c), rel=1e-12)]
    assert got == pytest.approx(step_multiplier(a, b, c, 0.7, 0.01, 100.0), rel=1e-12)


def test_lqrflm_step_grows_when_the_model_was_right_and_shrinks_when_it_was_not():
    """With an unchanged model and cost, the improvement came exactly as predicted: x5.  With a
    new model under which the new controller is worse than the old one: a shrink."""
    dyn_old, dyn_new, cost_old, cost_new, prev, cur, _ = _two_controllers_and_models(1)
    # make cur the LQR optimum under the old model, so the predicted improvement is positive
    cur = kl_constrained_lqr([dyn_old], [cost_old], [prev], [np.inf])[0].controller
    st = ConditionState(cur, step_mult=1.0, prev_controller=prev, prev_dynamics=dyn_old,
                        prev_cost=cost_old)
    assert _adapt(LQRFLM, st, None, dyn_old, cost_old) == 5.0
    st.step_mult = 1.0
    bad_cost = QuadraticCost(cost_old.Cm, cost_old.cv, cost_old.cc + 1e6)   # the cost rose
    assert _adapt(LQRFLM, st, None, dyn_old, bad_cost) == pytest.approx(0.1)


def test_lqrflm_step_is_unchanged_on_the_first_iteration():
    dyn_old, _, cost_old, _, _, cur, _ = _two_controllers_and_models()
    st = ConditionState(cur, step_mult=0.7)
    assert _adapt(LQRFLM, st, None, dyn_old, cost_old) == 0.7


def test_mdgps_step_compares_the_policy_linearisations(monkeypatch):
    """MDGPS (Montgomery & Levine 2016): L(π̄_prev | old model, old cost), L(p_new | old model,
    old cost) predicted, L(π̄_new | new model, new cost) actual — the policy's linearisations,
    not the controllers (LQR-FLM's choice would compare prev and cur)."""
    dyn_old, dyn_new, cost_old, cost_new, prev, cur, ref = _two_controllers_and_models(2)
    prev_ref = random_controller(np.random.default_rng(9), cur.T, cur.dX, cur.dU)
    st = ConditionState(cur, step_mult=0.7, prev_controller=prev, prev_reference=prev_ref,
                        prev_dynamics=dyn_old, prev_cost=cost_old)
    a = estimate_cost(prev_ref, dyn_old, cost_old)
    b = estimate_cost(cur, dyn_old, cost_old)
    c = estimate_cost(ref, dyn_new, cost_new)
    others = [estimate_cost(prev, dyn_old, cost_old), estimate_cost(cur, dyn_new, cost_new),
              estimate_cost(ref, dyn_old, cost_old)]
    assert len({round(v, 6) for v in [a, b, c, *others]}) == 6
    calls = _spy(monkeypatch)
    got = _adapt(MDGPS, st, ref, dyn_new, cost_new)
    assert calls == [pytest.approx((a, b, c), rel=1e-12)]
    assert got == pytest.approx(step_multiplier(a, b, c, 0.7, 0.01, 100.0), rel=1e-12)
    # the first C-step against the policy (the end of the warm-up) keeps the step, clipped
    calls.clear()
    st.step_mult = 0.7
    algo = MDGPS.__new__(MDGPS)
    algo.cfg, algo.iteration, algo.warmup_iterations = _Cfg(), 3, 3
    algo.warmup_kl_step = algo.warmup_max_step_mult = None
    MDGPS._adapt_step(algo, st, ref, dyn_new, cost_new)
    assert st.step_mult == 0.7 and calls == []


# --- the expected cost: Monte Carlo under the linear-Gaussian model -------------------------------
def test_expected_cost_matches_monte_carlo_of_the_marginals():
    rng = np.random.default_rng(3)
    T, dXU = 5, 4
    G = rng.standard_normal((T, dXU, dXU))
    Cm = G @ np.swapaxes(G, 1, 2) - 0.5 * np.eye(dXU)        # indefinite parts allowed
    cost = QuadraticCost(Cm, rng.standard_normal((T, dXU)), rng.standard_normal(T))
    mu = rng.standard_normal((T, dXU))
    L = 0.5 * rng.standard_normal((T, dXU, dXU))
    sigma = L @ np.swapaxes(L, 1, 2) + 0.1 * np.eye(dXU)
    n = 200_000
    z = mu[None] + np.einsum("tij,ntj->nti", np.linalg.cholesky(sigma),
                             rng.standard_normal((n, T, dXU)))
    c = (0.5 * np.einsum("nti,tij,ntj->nt", z, Cm, z) + np.einsum("nti,ti->nt", z, cost.cv)
         + cost.cc).sum(1)
    se = c.std() / np.sqrt(n)
    assert abs(expected_cost(mu, sigma, cost) - c.mean()) < 4 * se
    # the covariance term is not negligible here: without it the estimate is many SEs off
    no_cov = expected_cost(mu, np.zeros_like(sigma), cost)
    assert abs(no_cov - c.mean()) > 20 * se


def test_estimate_cost_matches_rollouts_of_the_linear_gaussian_system():
    rng = np.random.default_rng(4)
    T, dX, dU = 8, 3, 2
    dyn, A, B, c = random_system(rng, T, dX, dU, noise=0.05)
    ctrl = random_controller(rng, T, dX, dU)
    cost = quadratic_cost(T, dX, dU, np.eye(dX), 0.5 * np.eye(dU), rng.standard_normal(dX))
    n = 100_000
    x = rng.multivariate_normal(dyn.x0mu, dyn.x0sigma, size=n)
    total = np.zeros(n)
    for t in range(T):
        u = x @ ctrl.K[t].T + ctrl.k[t] + rng.standard_normal((n, dU)) @ ctrl.chol_pol_covar[t].T
        xu = np.concatenate([x, u], 1)
        total += 0.5 * np.einsum("ni,ij,nj->n", xu, cost.Cm[t], xu) + xu @ cost.cv[t] + cost.cc[t]
        x = x @ A.T + u @ B.T + c + rng.multivariate_normal(np.zeros(dX), dyn.dyn_covar[t], size=n)
    se = total.std() / np.sqrt(n)
    assert abs(estimate_cost(ctrl, dyn, cost) - total.mean()) < 4 * se, (total.mean(), se)


# --- QuadraticCost.from_derivatives: the constant term --------------------------------------------
class _Derivs:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_quadratic_expansion_of_a_quadratic_cost_is_exact_everywhere():
    """For c(z) = ½ zᵀHz + gᵀz + c0, the expansion taken at any sample, re-centred at zero, must
    give back c at every point: Cm = H, cv = g, cc = c0 (a wrong sign or factor in cc moves every
    value by a constant, which the LQR ignores but the step-size rule does not)."""
    rng = np.random.default_rng(5)
    N, T, dX, dU = 3, 4, 3, 2
    dXU = dX + dU
    G = rng.standard_normal((T, dXU, dXU))
    H = G @ np.swapaxes(G, 1, 2)
    g = rng.standard_normal((T, dXU))
    c0 = rng.standard_normal(T)
    X, U = rng.standard_normal((N, T, dX)), rng.standard_normal((N, T, dU))
    z = np.concatenate([X, U], 2)
    d = _Derivs(l=0.5 * np.einsum("nti,tij,ntj->nt", z, H, z) + np.einsum("nti,ti->nt", z, g) + c0,
                lx=np.einsum("tij,ntj->nti", H[:, :dX], z) + g[:, :dX],
                lu=np.einsum("tij,ntj->nti", H[:, dX:], z) + g[:, dX:],
                lxx=np.broadcast_to(H[:, :dX, :dX], (N, T, dX, dX)),
                luu=np.broadcast_to(H[:, dX:, dX:], (N, T, dU, dU)),
                lux=np.broadcast_to(H[:, dX:, :dX], (N, T, dU, dX)))
    q = QuadraticCost.from_derivatives(X, U, d)
    np.testing.assert_allclose(q.Cm, H, atol=1e-12)
    np.testing.assert_allclose(q.cv, g, atol=1e-12)
    np.testing.assert_allclose(q.cc, c0, atol=1e-12)
    w = rng.standard_normal((T, dXU))
    np.testing.assert_allclose(
        0.5 * np.einsum("ti,tij,tj->t", w, q.Cm, w) + np.einsum("ti,ti->t", w, q.cv) + q.cc,
        0.5 * np.einsum("ti,tij,tj->t", w, H, w) + np.einsum("ti,ti->t", w, g) + c0, atol=1e-10)


def test_expansion_of_a_non_quadratic_cost_matches_it_at_the_sample():
    """c = Σ cos(z) (non-quadratic), one sample: the expansion reproduces c, ∇c and ∇²c there."""
    rng = np.random.default_rng(6)
    T, dX, dU = 3, 2, 1
    X, U = rng.standard_normal((1, T, dX)), rng.standard_normal((1, T, dU))
    z = np.concatenate([X, U], 2)
    hess = np.zeros((1, T, dX + dU, dX + dU))
    idx = np.arange(dX + dU)
    hess[..., idx, idx] = -np.cos(z)
    d = _Derivs(l=np.cos(z).sum(-1), lx=-np.sin(X), lu=-np.sin(U), lxx=hess[..., :dX, :dX],
                luu=hess[..., dX:, dX:], lux=hess[..., dX:, :dX])
    q = QuadraticCost.from_derivatives(X, U, d)
    z0 = z[0]
    val = 0.5 * np.einsum("ti,tij,tj->t", z0, q.Cm, z0) + np.einsum("ti,ti->t", z0, q.cv) + q.cc
    np.testing.assert_allclose(val, np.cos(z0).sum(-1), atol=1e-12)
    np.testing.assert_allclose(np.einsum("tij,tj->ti", q.Cm, z0) + q.cv, -np.sin(z0), atol=1e-12)


# --- the KL-constrained LQR at an intermediate η --------------------------------------------------
def _lagrangian(ctrl, prev, dyn, cost, eta):
    """E_p[Σ c] + η KL(p ‖ p̄) under the linear-Gaussian dynamics (exact marginals)."""
    mu, sig = forward_pass(dyn.Fm[None], dyn.fv[None], dyn.dyn_covar[None], dyn.x0mu[None],
                           dyn.x0sigma[None], ctrl.K[None], ctrl.k[None], ctrl.pol_covar[None])
    return expected_cost(mu[0], sig[0], cost) + eta * traj_kl(mu[0], sig[0], ctrl, prev).sum()


def test_kl_constrained_controller_is_the_minimiser_of_its_lagrangian():
    """At the η the dual search settled on (well inside (min_eta, max_eta): the constraint is
    active), the controller minimises E[c] + η KL(p ‖ p̄) over linear-Gaussian controllers: random
    perturbations of its gains, offsets and covariance (in every direction, small and large) never
    lower it, and the increase is second order (it shrinks ~100x when the perturbation shrinks
    10x).  A controller optimal for another η (here 2η and η/2) is beaten at this η."""
    rng = np.random.default_rng(7)
    T, dX, dU = 10, 4, 2
    dyn, *_ = random_system(rng, T, dX, dU)
    cost = quadratic_cost(T, dX, dU, np.eye(dX), 0.05 * np.eye(dU), rng.standard_normal(dX))
    prev = random_controller(rng, T, dX, dU, scale=0.05, var=0.5)
    res = kl_constrained_lqr([dyn], [cost], [prev], [0.5 * T])[0]
    assert res.converged and 1e-3 < res.eta < 1e6, res.eta
    p, eta = res.controller, res.eta
    L0 = _lagrangian(p, prev, dyn, cost, eta)

    def perturbed(scale):
        dK = scale * rng.standard_normal(p.K.shape)
        dk = scale * rng.standard_normal(p.k.shape)
        G = np.eye(dU) + scale * rng.standard_normal((T, dU, dU))
        cov = G @ p.pol_covar @ np.swapaxes(G, 1, 2)
        return LinearGaussianController(p.K + dK, p.k + dk, 0.5 * (cov + np.swapaxes(cov, 1, 2)))

    for scale in (1e-1, 1e-2, 1e-3):
        for _ in range(30):
            assert _lagrangian(perturbed(scale), prev, dyn, cost, eta) >= L0 - 1e-9 * abs(L0)
    rises = []
    for scale in (1e-2, 1e-3):
        r = np.random.default_rng(11)
        dK = r.standard_normal(p.K.shape)
        q = LinearGaussianController(p.K + scale * dK, p.k, p.pol_covar)
        rises.append(_lagrangian(q, prev, dyn, cost, eta) - L0)
    assert 50 < rises[0] / rises[1] < 200, rises
    for other in (2 * eta, 0.5 * eta):
        q = _controller_at_eta(dyn, cost, prev, other)
        assert _lagrangian(q, prev, dyn, cost, eta) > L0 + 1e-6 * abs(L0)


def _controller_at_eta(dyn, cost, prev, eta):
    from gps_ros.control import backward_pass
    K, k, S, Lc, P, ok = backward_pass(dyn.Fm[None], dyn.fv[None], cost.Cm[None], cost.cv[None],
                                       prev.K[None], prev.k[None], prev.inv_pol_covar[None],
                                       np.array([eta]))
    assert ok[0]
    return LinearGaussianController(K[0], k[0], S[0])
