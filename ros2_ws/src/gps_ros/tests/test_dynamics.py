"""Tests of gps_ros.dynamics: linear-Gaussian fit, GMM (EM) and the GMM dynamics prior."""
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.dynamics import (
    GMM,
    DynamicsFitter,
    DynamicsPriorGMM,
    LinearGaussianDynamics,
    fit_linear_gaussian,
    joint_transition_points,
)


# ----------------------------------------------------------------------------- helpers
def ltv_system(dX, dU, T, seed, noise_scale=0.05):
    """Random stable time-varying system: A (T-1, dX, dX), B (T-1, dX, dU), c (T-1, dX), Q."""
    rng = np.random.default_rng(seed)
    A = np.eye(dX) + 0.2 * rng.standard_normal((T - 1, dX, dX)) / np.sqrt(dX)
    B = 0.5 * rng.standard_normal((T - 1, dX, dU))
    c = 0.3 * rng.standard_normal((T - 1, dX))
    L = noise_scale * (np.eye(dX) + 0.5 * np.tril(rng.standard_normal((dX, dX)), -1))
    return A, B, c, L @ L.T


def lti_system(dX, dU, seed):
    """Random stable time-invariant system A (dX, dX), B (dX, dU), c (dX,)."""
    rng = np.random.default_rng(seed)
    A = np.eye(dX) + 0.2 * rng.standard_normal((dX, dX)) / np.sqrt(dX)
    A *= 0.95 / max(1.0, np.max(np.abs(np.linalg.eigvals(A))))
    B = 0.5 * rng.standard_normal((dX, dU))
    c = 0.1 * rng.standard_normal(dX)
    return A, B, c


def rollout(A, B, c, Q, N, T, seed):
    """N trials of x_{t+1} = A_t x_t + B_t u_t + c_t + w_t, w ~ N(0, Q); random x0 and u.
    A, B, c may be time-invariant (2-D / 1-D) or per step (leading axis T-1)."""
    dX, dU = B.shape[-2:]
    rng = np.random.default_rng(seed)
    At = np.broadcast_to(A, (T - 1, dX, dX))
    Bt = np.broadcast_to(B, (T - 1, dX, dU))
    ct = np.broadcast_to(c, (T - 1, dX))
    Lq = np.linalg.cholesky(Q + 1e-15 * np.eye(dX))
    X = np.zeros((N, T, dX))
    U = rng.standard_normal((N, T, dU))
    X[:, 0] = rng.standard_normal((N, dX))
    for t in range(T - 1):
        X[:, t + 1] = (X[:, t] @ At[t].T + U[:, t] @ Bt[t].T + ct[t]
                       + rng.standard_normal((N, dX)) @ Lq.T)
    return X, U


def reference_fit(X, U, prior=None, reg=1e-6):
    """Straightforward per-time-step implementation of the spec (np.linalg.solve)."""
    N, T, dX = X.shape
    dU = U.shape[2]
    xu = dX + dU
    Fm = np.zeros((T, dX, xu))
    fv = np.zeros((T, dX))
    dyn = np.zeros((T, dX, dX))
    for t in range(T - 1):
        pts = np.hstack([X[:, t], U[:, t], X[:, t + 1]])
        mu_e = pts.mean(axis=0)
        S = (pts - mu_e).T @ (pts - mu_e) / N
        if prior is None:
            mu, sig = mu_e, S
        else:
            mu0, Phi, m, n0 = prior.eval(dX, dU, pts)
            dm = mu_e - mu0
            sig = (Phi + N * S + (N * m) / (N + m) * np.outer(dm, dm)) / (N + n0)
            mu = mu_e  # the prior shapes the covariance only
        sig = 0.5 * (sig + sig.T)
        Sxx = sig[:xu, :xu] + reg * np.eye(xu)
        F = np.linalg.solve(Sxx, sig[:xu, xu:]).T
        Fm[t] = F
        fv[t] = mu[xu:] - F @ mu[:xu]
        dyn[t] = sig[xu:, xu:] - F @ Sxx @ F.T
    return Fm, fv, dyn


class EvalOnly:
    """Wraps a prior so only the per-step ``eval`` is visible (forces the looped path)."""

    def __init__(self, prior):
        self.prior = prior

    def eval(self, dX, dU, pts):
        return self.prior.eval(dX, dU, pts)


class ConstantPrior:
    """A fixed NIW prior (ignores the points)."""

    def __init__(self, D, seed, m=2.0, n0=3.0):
        rng = np.random.default_rng(seed)
        self.mu0 = rng.standard_normal(D)
        G = rng.standard_normal((D, D))
        self.Phi = G @ G.T / D + np.eye(D)
        self.m, self.n0 = m, n0

    def eval(self, dX, dU, pts):
        assert pts.shape[1] == 2 * dX + dU
        return self.mu0, self.Phi, self.m, self.n0


def assert_valid(d: LinearGaussianDynamics, T, dX, dU):
    assert d.Fm.shape == (T, dX, dX + dU) and d.fv.shape == (T, dX)
    assert d.dyn_covar.shape == (T, dX, dX) and d.x0sigma.shape == (dX, dX)
    for a in (d.Fm, d.fv, d.dyn_covar, d.x0mu, d.x0sigma):
        assert np.all(np.isfinite(a))
    assert np.all(d.Fm[-1] == 0) and np.all(d.fv[-1] == 0) and np.all(d.dyn_covar[-1] == 0)
    np.testing.assert_array_equal(d.dyn_covar, np.swapaxes(d.dyn_covar, -1, -2))
    scale = max(np.max(np.abs(d.dyn_covar)), 1e-300)
    assert np.min(np.linalg.eigvalsh(d.dyn_covar)) >= -1e-12 * scale
    np.testing.assert_array_equal(d.x0sigma, d.x0sigma.T)
    np.linalg.cholesky(d.x0sigma)  # positive definite


# ----------------------------------------------------------------------------- fit
def test_recovers_known_ltv_system():
    dX, dU, T, N = 4, 2, 10, 200
    A, B, c, Q = ltv_system(dX, dU, T, seed=0)
    X, U = rollout(A, B, c, Q, N, T, seed=1)
    d = fit_linear_gaussian(X, U)
    assert_valid(d, T, dX, dU)
    AB = np.concatenate([A, B], axis=2)
    assert np.max(np.abs(d.Fm[:-1] - AB)) < 0.03
    assert np.max(np.abs(d.fv[:-1] - c)) < 0.03
    # noise covariance: per step within sampling error, and averaged over steps tightly
    rel = np.linalg.norm(d.dyn_covar[:-1] - Q, axis=(1, 2)) / np.linalg.norm(Q)
    assert np.max(rel) < 0.3
    assert np.linalg.norm(d.dyn_covar[:-1].mean(0) - Q) / np.linalg.norm(Q) < 0.1
    np.testing.assert_allclose(d.x0mu, X[:, 0].mean(0))
    np.testing.assert_allclose(d.x0sigma, np.cov(X[:, 0].T) + 1e-6 * np.eye(dX), rtol=1e-8)


def test_vectorised_fit_matches_reference_without_prior():
    dX, dU, T, N = 5, 3, 8, 50
    A, B, c, Q = ltv_system(dX, dU, T, seed=3)
    X, U = rollout(A, B, c, Q, N, T, seed=4)
    d = fit_linear_gaussian(X, U, regularization=1e-4)
    Fm, fv, dyn = reference_fit(X, U, reg=1e-4)
    np.testing.assert_allclose(d.Fm, Fm, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d.fv, fv, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d.dyn_covar, dyn, rtol=1e-7, atol=1e-10)


def test_vectorised_fit_matches_reference_with_priors():
    dX, dU, T, N = 5, 3, 8, 4
    A, B, c, Q = ltv_system(dX, dU, T, seed=5)
    X, U = rollout(A, B, c, Q, N, T, seed=6)
    const = ConstantPrior(2 * dX + dU, seed=7)
    d = fit_linear_gaussian(X, U, prior=const)
    Fm, fv, dyn = reference_fit(X, U, prior=const)
    np.testing.assert_allclose(d.Fm, Fm, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d.fv, fv, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d.dyn_covar, dyn, rtol=1e-7, atol=1e-10)

    # real GMM prior: batched eval_batch path == reference using per-step eval
    Xp, Up = rollout(A, B, c, Q, 30, T, seed=8)
    prior = DynamicsPriorGMM(min_samples_per_cluster=20)
    prior.update(Xp, Up)
    d = fit_linear_gaussian(X, U, prior=prior)
    d_loop = fit_linear_gaussian(X, U, prior=EvalOnly(prior))
    Fm, fv, dyn = reference_fit(X, U, prior=prior)
    for got in (d, d_loop):
        np.testing.assert_allclose(got.Fm, Fm, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(got.fv, fv, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(got.dyn_covar, dyn, rtol=1e-6, atol=1e-10)


def test_gmm_prior_beats_plain_regression_with_few_trials():
    dX, dU, T = 10, 4, 20
    A, B, c = lti_system(dX, dU, seed=11)
    Q = 1e-4 * np.eye(dX)
    Xp, Up = rollout(A, B, c, Q, 40, T, seed=12)  # prior data: 40 trials, other random controls
    X, U = rollout(A, B, c, Q, 3, T, seed=13)     # N = 3 << dX + dU = 14
    prior = DynamicsPriorGMM()
    prior.update(Xp, Up)
    plain = fit_linear_gaussian(X, U)
    with_prior = fit_linear_gaussian(X, U, prior=prior)
    AB = np.hstack([A, B])

    def err(d):
        return np.mean(np.linalg.norm(d.Fm[:-1] - AB, axis=(1, 2))) / np.linalg.norm(AB)

    assert_valid(with_prior, T, dX, dU)
    assert err(with_prior) < 0.5 * err(plain)
    assert err(with_prior) < 0.1


def test_prior_eval_strength_scaling():
    dX, dU, T = 3, 2, 12
    A, B, c, Q = ltv_system(dX, dU, T, seed=21)
    X, U = rollout(A, B, c, Q, 10, T, seed=22)
    p1 = DynamicsPriorGMM(strength=1.0)
    p3 = DynamicsPriorGMM(strength=3.0)
    p1.update(X, U)
    p3.update(X, U)
    pts = joint_transition_points(X, U)[4]
    mu0, Phi, m, n0 = p1.eval(dX, dU, pts)
    mu0b, Phib, mb, n0b = p3.eval(dX, dU, pts)
    assert (m, n0, mb, n0b) == (1.0, 1.0, 3.0, 3.0)
    np.testing.assert_allclose(mu0b, mu0)
    np.testing.assert_allclose(Phib, 3.0 * Phi)
    gm, gP, _, _ = p1.gmm.inference(pts)
    np.testing.assert_allclose(Phi, gP)
    # batched evaluation agrees with per-step evaluation
    P = joint_transition_points(X, U)
    bm, bP, bmm, bn0 = p3.eval_batch(dX, dU, P)
    np.testing.assert_allclose(bm[4], mu0b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bP[4], Phib, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(bmm, 3.0)
    with pytest.raises(ValueError):
        p1.eval(dX + 1, dU, pts)
    with pytest.raises(RuntimeError):
        DynamicsPriorGMM().eval(dX, dU, pts)


def _robust_cases():
    dX, dU, T = 6, 3, 10
    A, B, c, Q = ltv_system(dX, dU, T, seed=31)
    X5, U5 = rollout(A, B, c, Q, 5, T, seed=32)
    Xd = X5.copy()
    Xd[..., 1] = Xd[..., 0]   # duplicated state columns
    Xd[..., 2] = 1.0          # and a constant one
    return {
        "N=1": (X5[:1], U5[:1]),
        "N=2": (X5[:2], U5[:2]),
        "zeros": (np.zeros_like(X5), np.zeros_like(U5)),
        "duplicated_columns": (Xd, U5),
        "huge_scale": (1e6 * X5, 1e6 * U5),
        "huge_scale_duplicated": (1e6 * Xd, 1e6 * U5),
    }


@pytest.mark.parametrize("case", list(_robust_cases()))
@pytest.mark.parametrize("use_prior", [False, True])
def test_robust_outputs_finite_and_psd(case, use_prior):
    X, U = _robust_cases()[case]
    N, T, dX = X.shape
    prior = None
    if use_prior:
        prior = DynamicsPriorGMM()
        prior.update(X, U)
        assert np.all(np.isfinite(prior.gmm.mu)) and np.all(np.isfinite(prior.gmm.sigma))
        assert np.all(np.isfinite(prior.gmm.loglik_history))
    d = fit_linear_gaussian(X, U, prior=prior)
    assert_valid(d, T, dX, U.shape[2])
    if case == "zeros" and not use_prior:
        assert np.all(d.Fm == 0) and np.all(d.fv == 0) and np.all(d.dyn_covar == 0)
    if case == "zeros" and use_prior:  # the prior only adds its tiny regularised covariance
        assert np.max(np.abs(d.Fm)) < 1e-6 and np.max(np.abs(d.fv)) < 1e-6
        assert np.max(np.abs(d.dyn_covar)) < 1e-5


def test_fit_input_validation():
    X = np.zeros((2, 5, 3))
    with pytest.raises(ValueError):
        fit_linear_gaussian(X, np.zeros((2, 4, 1)))
    Xn = X.copy()
    Xn[0, 1, 0] = np.nan
    with pytest.raises(ValueError):
        fit_linear_gaussian(Xn, np.zeros((2, 5, 1)))


def test_to_from_arrays_roundtrip(tmp_path):
    dX, dU, T = 3, 2, 6
    A, B, c, Q = ltv_system(dX, dU, T, seed=41)
    X, U = rollout(A, B, c, Q, 20, T, seed=42)
    d = fit_linear_gaussian(X, U)
    assert (d.T, d.dX, d.dU) == (T, dX, dU)
    np.savez(tmp_path / "dyn.npz", **d.to_arrays())
    with np.load(tmp_path / "dyn.npz") as f:
        e = LinearGaussianDynamics.from_arrays(f)
    for k, v in d.to_arrays().items():
        np.testing.assert_array_equal(getattr(e, k), v)
    with pytest.raises(ValueError):
        LinearGaussianDynamics(d.Fm, d.fv[:-1], d.dyn_covar, d.x0mu, d.x0sigma)


# ----------------------------------------------------------------------------- GMM
def three_clusters(seed, n_per=300, d=5, sep=10.0):
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((3, d))
    covs = []
    pts = []
    for k in range(3):
        G = rng.standard_normal((d, d))
        S = G @ G.T / d + 0.2 * np.eye(d)
        covs.append(S)
        pts.append(rng.multivariate_normal(means[k], S, size=n_per))
    data = np.concatenate(pts)
    perm = rng.permutation(len(data))
    return data[perm], means, np.array(covs)


def test_gmm_recovers_separated_clusters_and_inference():
    data, means, covs = three_clusters(seed=51)
    g = GMM(seed=0)
    g.update(data, K=3)
    assert g.converged
    # match recovered to true means
    D = np.linalg.norm(g.mu[:, None] - means[None], axis=2)
    match = np.argmin(D, axis=0)
    assert sorted(match.tolist()) == [0, 1, 2]
    assert np.max(D[match, np.arange(3)]) < 0.4
    np.testing.assert_allclose(np.exp(g.logmass), 1 / 3, atol=0.02)
    for k in range(3):
        assert np.linalg.norm(g.sigma[match[k]] - covs[k]) / np.linalg.norm(covs[k]) < 0.3

    # inference on points of one cluster: the prior is that cluster's Gaussian
    rng = np.random.default_rng(52)
    pts = rng.multivariate_normal(means[1], covs[1], size=4)
    mu0, Phi, m, n0 = g.inference(pts)
    assert (m, n0) == (1.0, 1.0)
    np.testing.assert_allclose(mu0, g.mu[match[1]], atol=1e-6)
    np.testing.assert_allclose(Phi, g.sigma[match[1]], atol=1e-6)
    # points from two clusters: equal weights, Phi includes the spread of the means
    pts2 = np.vstack([pts[:2], rng.multivariate_normal(means[2], covs[2], size=2)])
    mu0, Phi, _, _ = g.inference(pts2)
    a, b = g.mu[match[1]], g.mu[match[2]]
    np.testing.assert_allclose(mu0, 0.5 * (a + b), atol=1e-6)
    expect = 0.5 * (g.sigma[match[1]] + g.sigma[match[2]]) + 0.25 * np.outer(a - b, a - b)
    np.testing.assert_allclose(Phi, expect, rtol=1e-6, atol=1e-6)


def test_gmm_loglik_non_decreasing():
    # overlapping clusters and an uninformative (sequential chunks of shuffled data) start,
    # so EM has to work for many iterations
    data, _, _ = three_clusters(seed=61, sep=2.0)
    g = GMM(init_sequential=True, seed=0)
    g.update(data, K=3, max_iterations=60, tol=0.0)
    ll = np.array(g.loglik_history)
    assert len(ll) >= 20 and g.n_reseeds == 0
    assert np.all(np.diff(ll) >= -1e-9 * np.abs(ll[1:]))
    assert ll[-1] > ll[0] + 0.1
    # warm start on the same data: starts at the optimum and stops at once
    g.update(data, K=3, max_iterations=60, tol=1e-5)
    assert g.warm_started and g.n_iterations <= 3
    assert g.loglik_history[0] >= ll[-1] - 1e-9 * abs(ll[-1])


def test_gmm_degenerate_data_never_nan():
    rng = np.random.default_rng(71)
    cases = {
        "zeros": np.zeros((100, 8)),
        "two_points": np.repeat(rng.standard_normal((2, 8)), 50, axis=0),
        "huge_dup": 1e6 * np.repeat(rng.standard_normal((200, 4)), 2, axis=1),
        "tiny": 1e-9 * rng.standard_normal((150, 6)),
    }
    for name, data in cases.items():
        g = GMM(seed=1)
        g.update(data, K=6)
        for a in (g.mu, g.sigma, g.logmass, np.array(g.loglik_history)):
            assert np.all(np.isfinite(a)), name
        mu0, Phi, m, n0 = g.inference(data[:3])
        assert np.all(np.isfinite(mu0)) and np.all(np.isfinite(Phi)), name
        assert np.min(np.linalg.eigvalsh(Phi)) >= -1e-9 * np.max(np.abs(Phi)), name
    # K larger than the number of points is clamped
    g = GMM()
    g.update(rng.standard_normal((3, 4)), K=10)
    assert g.K == 3


def test_gmm_reseeds_cluster_that_loses_its_points():
    data, _, _ = three_clusters(seed=81)
    g = GMM(seed=0)
    g.update(data, K=3)
    # new data far away from two of the three clusters: warm start is rejected or clusters are
    # re-seeded; either way the result is finite and every cluster keeps some mass
    rng = np.random.default_rng(82)
    new = np.concatenate([data[:300], 50.0 + rng.standard_normal((300, data.shape[1]))])
    g.update(new, K=3)
    assert np.all(np.isfinite(g.mu)) and np.all(np.isfinite(g.sigma))
    assert np.all(np.exp(g.logmass) * g.N > 0.5)
    # force the warm start and a cluster with no points at all
    g2 = GMM(seed=0)
    g2.update(data, K=3)
    g2.mu[0] += 1e4
    d = data.shape[1]
    g2._init_hard = lambda Z, K: g2._set_params(  # make the fresh start worse than the warm one
        np.full((K, d), 1e6), np.tile(np.eye(d), (K, 1, 1)), np.zeros(K))
    g2.update(data, K=3)
    assert g2.warm_started and g2.n_reseeds >= 1
    assert np.all(np.isfinite(g2.mu)) and np.all(np.isfinite(np.array(g2.loglik_history)))
    assert np.all(np.exp(g2.logmass) * g2.N > 0.5)


# ----------------------------------------------------------------------------- prior / fitter
def test_prior_buffer_and_cluster_count():
    dX, dU, T = 3, 2, 11
    A, B, c, Q = ltv_system(dX, dU, T, seed=91)
    X, U = rollout(A, B, c, Q, 12, T, seed=92)
    p = DynamicsPriorGMM(max_clusters=4, min_samples_per_cluster=10, max_samples=5)
    p.update(X[:2], U[:2])
    assert p.n_trials == 2 and p.gmm.K == 2   # floor(2*10/10) = 2
    p.update(X[2:], U[2:])
    assert p.n_trials == 5 and p.gmm.K == 4   # min(4, floor(5*10/10))
    np.testing.assert_array_equal(p.transition_data()[-10:], joint_transition_points(X, U)[:, -1])
    mu0, Phi = p.initial_state()
    np.testing.assert_allclose(mu0, X[-5:, 0].mean(0))
    np.linalg.cholesky(Phi)


def test_dynamics_fitter_two_conditions():
    dX, dU, T = 4, 2, 15
    A, B, c = lti_system(dX, dU, seed=101)
    Q = 1e-4 * np.eye(dX)
    trajs = [SimpleNamespace(X=X, U=U) for X, U in
             (rollout(A, B, c, Q, 3, T, seed=102), rollout(A, B, c, Q, 4, T, seed=103))]
    f = DynamicsFitter(prior_kwargs=dict(max_samples=6, min_samples_per_cluster=10))
    dyns = f.fit(trajs)
    assert len(dyns) == 2
    for d, tr in zip(dyns, trajs):
        assert_valid(d, T, dX, dU)
        np.testing.assert_allclose(d.x0mu, tr.X[:, 0].mean(0))
    # round-robin buffering keeps a balanced newest set: trials 1,2 of both + trial 3 of cond 1
    assert f.prior.n_trials == 6
    buf = np.stack(f.prior._X)
    expect = np.stack([trajs[0].X[1], trajs[1].X[1], trajs[0].X[2], trajs[1].X[2], trajs[1].X[3]])
    np.testing.assert_array_equal(buf[1:], expect)
    # the prior helps: fit error vs the true system is small even with 3-4 trials
    AB = np.hstack([A, B])
    plain = DynamicsFitter(use_prior=False).fit(trajs)
    for d, p in zip(dyns, plain):
        assert np.mean(np.abs(d.Fm[:-1] - AB)) < 0.05
        assert np.mean(np.abs(d.Fm[:-1] - AB)) < 0.5 * np.mean(np.abs(p.Fm[:-1] - AB))
    assert plain[0].Fm.shape == dyns[0].Fm.shape and DynamicsFitter(use_prior=False).prior is None
    with pytest.raises(ValueError):
        f.fit([SimpleNamespace(X=np.zeros((0, T, dX)), U=np.zeros((0, T, dU)))])


def test_dynamics_fitter_from_config():
    cfg_mod = pytest.importorskip("gps_ros.config")
    cfg = cfg_mod.DynamicsConfig()
    f = DynamicsFitter.from_config(cfg)
    assert f.prior is not None and f.prior.max_samples == cfg.prior.max_samples
    cfg.type = "linear_regression"
    assert DynamicsFitter.from_config(cfg).prior is None


def test_gmm_is_scale_equivariant_on_degenerate_data():
    # duplicated columns make the covariances singular up to the regulariser; the regulariser
    # is applied in standardised units, so rescaling the data rescales the fit exactly
    data, _, _ = three_clusters(seed=111, d=3)
    data = np.hstack([data, data[:, :1]])
    g1, g2 = GMM(seed=0), GMM(seed=0)
    g1.update(data, K=3)
    g2.update(1e6 * data, K=3)
    np.testing.assert_allclose(g2.mu, 1e6 * g1.mu, rtol=1e-8, atol=1e-3)
    np.testing.assert_allclose(g2.loglik_history[-1],
                               g1.loglik_history[-1] - data.shape[1] * np.log(1e6), rtol=1e-8)
    np.testing.assert_allclose(g2.sigma, 1e12 * g1.sigma, rtol=1e-6,
                               atol=1e-6 * 1e12 * np.abs(g1.sigma).max())


# ============================================================================= issue 12: prior-free
# fit via the Gram form of the Schur complement (no eigendecomposition).  Self-contained block.
import gps_ros.dynamics.linear_gaussian as _lg  # noqa: E402


def _schur_and_gram(P, d_in, reg):
    """Float64 textbook forms for the prior-free fit of points P (B, N, D): F, f, the Schur
    complement  C - B^T (A + reg' I)^{-1} B  and the Gram identity  R^T R / N + reg' F F^T."""
    N = P.shape[1]
    mu = P.mean(axis=1)
    C = P - mu[:, None, :]
    sig = np.swapaxes(C, -1, -2) @ C / N
    Szz, Szy, Syy = sig[:, :d_in, :d_in], sig[:, :d_in, d_in:], sig[:, d_in:, d_in:]
    i = np.arange(d_in)
    regp = reg + 1e-12 * np.mean(Szz[:, i, i], axis=1)
    A = Szz + regp[:, None, None] * np.eye(d_in)
    W = np.linalg.solve(A, Szy)
    S_schur = Syy - np.swapaxes(Szy, -1, -2) @ W
    R = C[:, :, d_in:] - C[:, :, :d_in] @ W
    S_gram = np.swapaxes(R, -1, -2) @ R / N + regp[:, None, None] * (np.swapaxes(W, -1, -2) @ W)
    F = np.swapaxes(W, -1, -2)
    f = mu[:, d_in:] - np.einsum("byx,bx->by", F, mu[:, :d_in])
    return F, f, S_schur, S_gram


def _old_fit_without_prior(P, d_in, reg):
    """The pre-issue-12 prior-free computation: Schur complement, then eigenvalue clipping."""
    F, f, S, _ = _schur_and_gram(P, d_in, reg)
    S = 0.5 * (S + np.swapaxes(S, -1, -2))
    w, V = np.linalg.eigh(S)
    S = (V * np.maximum(w, 0.0)[:, None, :]) @ np.swapaxes(V, -1, -2)
    return F, f, 0.5 * (S + np.swapaxes(S, -1, -2))


def _rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("N", [3, 9, 30])  # N < d_in (dual / kernel form), N = d_in, N > d_in
def test_no_prior_gram_identity_matches_schur_form(N):
    dX, dU, T = 6, 3, 7
    A, B, c, Q = ltv_system(dX, dU, T, seed=40 + N)
    X, U = rollout(A, B, c, Q, N, T, seed=41 + N)
    P = joint_transition_points(X, U)
    reg = 1e-2  # well conditioned, so the float64 Schur complement itself is accurate
    F, f, S_schur, S_gram = _schur_and_gram(P, dX + dU, reg)
    assert _rel_err(S_gram, S_schur) < 1e-10  # the identity
    d = fit_linear_gaussian(X, U, regularization=reg)
    assert _rel_err(d.dyn_covar[:-1], S_schur) < 1e-10
    assert _rel_err(d.Fm[:-1], F) < 1e-10
    assert _rel_err(d.fv[:-1], f) < 1e-10
    Fp, fp, Sp = _lg.fit_conditional_gaussians(P, dX + dU)  # also via the shared core
    F6, f6, S6, _ = _schur_and_gram(P, dX + dU, 1e-6)
    assert _rel_err(Fp, F6) < 1e-6 and _rel_err(fp, f6) < 1e-6 and _rel_err(Sp, S6) < 1e-6


@pytest.mark.parametrize("N", [1, 2, 3, 5])
@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
@pytest.mark.parametrize("duplicated", [False, True])
def test_no_prior_dyn_covar_psd_on_rank_deficient_data(N, scale, duplicated):
    dX, dU, T = 32, 7, 6  # N < 2 dX + dU: every joint covariance is rank deficient
    A, B, c, Q = ltv_system(dX, dU, T, seed=50)
    X, U = rollout(A, B, c, Q, N, T, seed=51)
    if duplicated:
        X[..., 1] = X[..., 0]
        U[..., 1] = 3.0 * U[..., 0]
    d = fit_linear_gaussian(scale * X, scale * U)
    assert_valid(d, T, dX, dU)
    S = d.dyn_covar[:-1]
    w = np.linalg.eigvalsh(S)
    per_slice_scale = np.max(np.abs(S), axis=(1, 2))
    assert np.all(w[:, 0] >= -1e-13 * per_slice_scale)
    if N == 1:  # one trial: no spread, the fit is the mean transition with zero noise
        assert np.all(S == 0) and np.all(d.Fm == 0)
        np.testing.assert_allclose(d.fv[:-1], scale * X[0, 1:], rtol=1e-12)
    else:
        assert np.all(per_slice_scale > 0)


@pytest.mark.parametrize("N", [2, 5, 20, 60])
def test_no_prior_fit_agrees_with_old_schur_fit(N):
    # GPS-sized state and action (d_in = 39); reg 1e-6 makes the xu-block ill conditioned, so the
    # old Schur form carries ~1e-8 relative round-off (growing with the data's scale: at 1e6 it is
    # ~1e-2, see the high-precision test below); agreement is to that
    dX, dU, T = 32, 7, 5
    A, B, c, Q = ltv_system(dX, dU, T, seed=60, noise_scale=0.01)
    X, U = rollout(A, B, c, Q, N, T, seed=61)
    F, f, S = _old_fit_without_prior(joint_transition_points(X, U), dX + dU, 1e-6)
    d = fit_linear_gaussian(X, U)
    assert _rel_err(d.Fm[:-1], F) < 1e-6
    assert _rel_err(d.fv[:-1], f) < 1e-6
    assert _rel_err(d.dyn_covar[:-1], S) < 1e-6


def test_no_prior_fit_accuracy_against_high_precision():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    dX, dU, T, N = 6, 3, 4, 4
    A, B, c, Q = ltv_system(dX, dU, T, seed=70, noise_scale=0.01)
    X, U = rollout(A, B, c, Q, N, T, seed=71)
    X, U = 1e3 * X, 1e3 * U  # Schur form: ~1e-8 relative round-off here
    d = fit_linear_gaussian(X, U)
    P = joint_transition_points(X, U)
    d_in = dX + dU
    for t in range(T - 1):
        Pm = mp.matrix(P[t].tolist())
        mu = [mp.fsum(Pm[i, j] for i in range(N)) / N for j in range(P.shape[2])]
        Cm = mp.matrix(N, P.shape[2])
        for i in range(N):
            for j in range(P.shape[2]):
                Cm[i, j] = Pm[i, j] - mu[j]
        Z, Y = Cm[:, :d_in], Cm[:, d_in:]
        Szz = Z.T * Z / N
        regp = mp.mpf(1e-6) + mp.mpf(1e-12) * mp.fsum(Szz[i, i] for i in range(d_in)) / d_in
        W = mp.inverse(Szz + regp * mp.eye(d_in)) * (Z.T * Y / N)
        S = Y.T * Y / N - (Z.T * Y / N).T * W
        F_ref = np.array(W.T.tolist(), dtype=float)
        S_ref = np.array(S.tolist(), dtype=float)
        assert _rel_err(d.Fm[t], F_ref) < 1e-12
        assert _rel_err(d.dyn_covar[t], S_ref) < 1e-12


def test_no_prior_fallbacks_to_general_path(monkeypatch):
    dX, dU, T, N = 4, 2, 5, 3
    A, B, c, Q = ltv_system(dX, dU, T, seed=80)
    X, U = rollout(A, B, c, Q, N, T, seed=81)
    # (a) regularization 0 and no spread of (x_0, u_0): the ridge is 0, step 0 takes the general
    # (Schur + jitter) path: F = 0 and the noise is the empirical covariance of x_1.  (Values
    # whose mean is exact in floating point, so that the centred block is exactly zero.)
    X0, U0 = X.copy(), U.copy()
    X0[:, 0] = 0.5
    U0[:, 0] = -0.25
    general = []
    real_general = _lg.condition_joint_gaussian
    monkeypatch.setattr(_lg, "condition_joint_gaussian",
                        lambda mu, *a: (general.append(len(mu)), real_general(mu, *a))[1])
    d = fit_linear_gaussian(X0, U0, regularization=0.0)
    assert general == [1]  # step 0 only
    assert_valid(d, T, dX, dU)
    assert np.max(np.abs(d.Fm[0])) < 1e-12
    x1 = X0[:, 1] - X0[:, 1].mean(0)
    np.testing.assert_allclose(d.dyn_covar[0], x1.T @ x1 / N, rtol=1e-12, atol=1e-15)
    ref = fit_linear_gaussian(X0, U0, regularization=1e-2)

    # (b) a factorisation failure on one step: that step alone takes the general path
    real = _lg._regression_gram

    def flaky(Z, Y, *args):
        if Z.shape[0] > 1 or np.array_equal(Z[0], bad_Z):
            raise np.linalg.LinAlgError("injected")
        return real(Z, Y, *args)

    P = joint_transition_points(X0, U0)
    bad_Z = P[2] - P[2].mean(0)
    bad_Z = bad_Z[:, :dX + dU]
    monkeypatch.setattr(_lg, "_regression_gram", flaky)
    general.clear()
    d2 = fit_linear_gaussian(X0, U0, regularization=1e-2)
    assert general == [1]  # step 2 only
    for k in ("Fm", "fv", "dyn_covar"):
        np.testing.assert_allclose(getattr(d2, k), getattr(ref, k), rtol=1e-9, atol=1e-12)
    assert_valid(d2, T, dX, dU)


def test_project_psd_single_eigendecomposition_of_rejected_slices(monkeypatch):
    rng = np.random.default_rng(90)
    n = 5
    G = rng.standard_normal((n, n))
    pd = G @ G.T + np.eye(n)
    v = rng.standard_normal(n)
    rank1 = np.outer(v, v)
    indefinite = pd - 3.0 * np.max(np.linalg.eigvalsh(pd)) * np.outer(v, v) / (v @ v)
    S = np.stack([pd, np.zeros((n, n)), rank1, indefinite, pd + 1e-3 * G])  # last: asymmetric
    sizes = []
    real_eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda a: (sizes.append(a.shape[0]), real_eigh(a))[1])
    monkeypatch.setattr(np.linalg, "eigvalsh", None)  # no separate eigenvalue pass
    out = _lg._project_psd(S)
    sym = 0.5 * (S + np.swapaxes(S, -1, -2))
    np.testing.assert_array_equal(out, np.swapaxes(out, -1, -2))
    # PD slices untouched (bitwise) and the zero matrix stays zero
    np.testing.assert_array_equal(out[[0, 4]], sym[[0, 4]])
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[2], rank1, atol=1e-13 * np.abs(rank1).max())
    w, V = real_eigh(sym[3])
    np.testing.assert_allclose(out[3], (V * np.maximum(w, 0)) @ V.T, atol=1e-12 * np.abs(pd).max())
    assert sizes == [3]  # one eigendecomposition, of the three slices the Cholesky test rejected
    monkeypatch.undo()
    assert np.min(np.linalg.eigvalsh(out)) >= -1e-13 * np.abs(out).max()
    # all slices PD: no eigendecomposition at all
    sizes.clear()
    monkeypatch.setattr(np.linalg, "eigh", None)
    np.testing.assert_array_equal(_lg._project_psd(S[[0, 4]]), sym[[0, 4]])
