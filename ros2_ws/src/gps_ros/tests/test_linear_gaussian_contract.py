"""The contracts of gps_ros.dynamics.linear_gaussian the end-to-end fit tests leave open: each test
names the bug it catches (the mutants of ``bench/mutation_score.py`` that survived
tests/test_dynamics.py), checked against closed forms written out here."""
import numpy as np
import pytest
import scipy.linalg as sla

from gps_ros.dynamics import linear_gaussian as lg
from gps_ros.dynamics.linear_gaussian import (LinearGaussianDynamics, condition_joint_gaussian,
                                              eval_prior, fit_conditional_gaussians,
                                              fit_linear_gaussian, joint_transition_points)


def dyn(T=3, dX=2, dU=1, fill=0.0):
    return dict(Fm=np.full((T, dX, dX + dU), fill), fv=np.full((T, dX), fill),
                dyn_covar=np.zeros((T, dX, dX)), x0mu=np.zeros(dX), x0sigma=np.eye(dX))


# --- the dataclass ------------------------------------------------------------------------------
def test_arrays_are_float64_copies():
    """Catches: dtype dropped in __post_init__ (int arrays stay int), to_arrays / from_arrays
    sharing memory with the caller's arrays."""
    d = LinearGaussianDynamics(**{k: v.astype(int) for k, v in dyn(fill=1).items()})
    assert all(getattr(d, k).dtype == np.float64 for k in d._KEYS)
    out = d.to_arrays()
    out["Fm"][0, 0, 0] = 99.0
    assert d.Fm[0, 0, 0] == 1.0
    src = dyn(fill=2.0)
    e = LinearGaussianDynamics.from_arrays(src)
    src["fv"][0, 0] = 99.0
    assert e.fv[0, 0] == 2.0
    c = e.copy()
    c.fv[0, 0] = 5.0
    assert e.fv[0, 0] == 2.0 and (c.T, c.dX, c.dU) == (3, 2, 1)


def test_shape_errors_name_the_array():
    """Catches: the messages replaced (None), dX+dU == dX (no action) refused."""
    with pytest.raises(ValueError, match=r"Fm must be \(T, dX, dX\+dU\); got \(3, 2\)"):
        LinearGaussianDynamics(**{**dyn(), "Fm": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"Fm \(3, 2, 1\): last axis must be dX\+dU >= dX"):
        LinearGaussianDynamics(**{**dyn(), "Fm": np.zeros((3, 2, 1))})
    with pytest.raises(ValueError, match=r"x0sigma has shape \(2,\), expected \(2, 2\)"):
        LinearGaussianDynamics(**{**dyn(), "x0sigma": np.zeros(2)})
    d = LinearGaussianDynamics(**dyn(dU=0))                       # an autonomous system
    assert d.dU == 0
    with pytest.raises(KeyError, match=r"missing arrays \['fv', 'x0mu'\]"):
        LinearGaussianDynamics.from_arrays({k: v for k, v in dyn().items()
                                            if k not in ("fv", "x0mu")})


# --- inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("X, U, match", [
    (np.zeros((2, 5)), np.zeros((2, 5, 1)), r"X and U must be \(N, T, d\); got \(2, 5\) and"),
    (np.zeros((2, 5, 3)), np.zeros((2, 5)), r"X and U must be \(N, T, d\)"),
    (np.zeros((2, 5, 3)), np.zeros((3, 5, 1)), r"X \(2, 5, 3\) and U \(3, 5, 1\) disagree"),
    (np.zeros((0, 5, 3)), np.zeros((0, 5, 1)), r"need at least one trial and one time step"),
    (np.zeros((2, 0, 3)), np.zeros((2, 0, 1)), r"need at least one trial and one time step"),
])
def test_bad_trials_are_refused_with_the_reason(X, U, match):
    with pytest.raises(ValueError, match=match):
        fit_linear_gaussian(X, U)


@pytest.mark.parametrize("bad", ["X", "U"])
def test_non_finite_states_or_actions_are_refused(bad):
    X, U = np.zeros((2, 4, 2)), np.zeros((2, 4, 1))
    (X if bad == "X" else U)[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"^X and U must be finite \(filter bad trials before fitting\)$"):
        fit_linear_gaussian(X, U)


def test_integer_trials_fit_as_float():
    """Catches: the float64 conversion of X / U dropped (integer states: integer division of the
    means and an integer transition array)."""
    rng = np.random.default_rng(0)
    X = rng.integers(-5, 5, (6, 4, 2))
    U = rng.integers(-5, 5, (6, 4, 1))
    a, b = fit_linear_gaussian(X, U), fit_linear_gaussian(X.astype(float), U.astype(float))
    for k in a._KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    P = joint_transition_points(X[:, :, :1].astype(np.float32), U)
    assert P.dtype == np.result_type(np.float32, U.dtype)


def test_one_step_and_one_trial():
    """T = 1: no transition (zeros), only the initial state.  N = 1: x0sigma is the
    regularisation alone.  Catches T >= 2 -> T > 2, N > 1 -> N > 2, max(T-1, 0) -> 1."""
    X = np.arange(6.0).reshape(3, 1, 2)
    d = fit_linear_gaussian(X, np.ones((3, 1, 1)))
    assert d.T == 1 and np.all(d.Fm == 0) and np.all(d.dyn_covar == 0)
    assert joint_transition_points(X, np.ones((3, 1, 1))).shape == (0, 3, 5)
    np.testing.assert_allclose(d.x0mu, [2.0, 3.0])
    d0 = X[:, 0] - X[:, 0].mean(0)
    np.testing.assert_allclose(d.x0sigma, d0.T @ d0 / 2 + 1e-6 * np.eye(2), rtol=1e-12)
    # two steps: one transition, fitted
    rng = np.random.default_rng(1)
    X2, U2 = rng.standard_normal((5, 2, 2)), rng.standard_normal((5, 2, 1))
    d2 = fit_linear_gaussian(X2, U2)
    assert np.any(d2.Fm[0] != 0) and np.all(d2.Fm[1] == 0)
    # two trials: the sample covariance (1 / (N - 1))
    X3 = np.array([[[0.0, 0.0]], [[2.0, 0.0]]])
    d3 = fit_linear_gaussian(X3, np.zeros((2, 1, 1)), x0_regularization=0.0)
    np.testing.assert_allclose(d3.x0sigma, [[2.0, 0.0], [0.0, 1e-12]], rtol=1e-9)  # + 1e-12 x mean diag 1


def test_x0_jitter_without_regularization_and_spread():
    """x0_regularization 0 and one trial: the 1e-12 floor (positive definite); 0 with spread:
    1e-12 times the mean diagonal.  Catches the floor's condition (<= 0 -> < 0), its value and
    the relative term's bound (max(., 0) -> max(., 1))."""
    d = fit_linear_gaussian(np.ones((1, 2, 2)), np.zeros((1, 2, 1)), x0_regularization=0.0)
    np.testing.assert_array_equal(d.x0sigma, 1e-12 * np.eye(2))
    X = np.zeros((2, 1, 2))
    X[1, 0] = [1e-3, 0.0]
    d = fit_linear_gaussian(X, np.zeros((2, 1, 1)), x0_regularization=0.0)
    base = np.diag([5e-7, 0.0])
    np.testing.assert_allclose(d.x0sigma, base + 1e-12 * 2.5e-7 * np.eye(2), rtol=1e-9, atol=0)


# --- Cholesky solves ----------------------------------------------------------------------------
def spd(rng, n, scale=1.0):
    G = rng.standard_normal((n, n))
    return scale * (G @ G.T / n + 0.5 * np.eye(n))


def test_batched_solve_is_exact_and_one_factorisation_for_a_pd_batch(monkeypatch):
    """Catches: the batched factorisation bypassed (every batch solved slice by slice)."""
    rng = np.random.default_rng(2)
    A = np.stack([spd(rng, 4) for _ in range(5)])
    B = rng.standard_normal((5, 4, 2))
    calls = []
    real = sla.cho_factor
    monkeypatch.setattr(sla, "cho_factor", lambda a, **kw: (calls.append(a.shape), real(a, **kw))[1])
    W = lg._batched_cho_solve(A, B)
    np.testing.assert_allclose(W, np.linalg.solve(A, B), rtol=1e-10, atol=1e-12)
    assert calls == [(5, 4, 4)]


def test_batched_solve_fallbacks(monkeypatch):
    """A batch with a non-PD slice goes slice by slice: the PD slices exactly (no jitter), a
    slice with eigenvalue -3e-10 (times the mean diagonal) with the first jitter of the ladder
    1e-12, 1e-11, ... that makes it PD (1e-9), indefinite slices no jitter of the 16 rungs
    reaches (up to 1e2) by least squares.  Catches the ladder's start, base, growth and scale
    (each changes which jitter is used and so the solution), the symmetrisation and the
    least-squares fallback."""
    rng = np.random.default_rng(3)
    n = 3
    good = spd(rng, n)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    near = Q @ np.diag([2.0, 1.0, -3e-10 * 1.0]) @ Q.T
    scale_near = np.mean(np.abs(np.diag(near)))
    near = Q @ np.diag([2.0, 1.0, -3e-10 * scale_near]) @ Q.T
    scale_near = np.mean(np.abs(np.diag(near)))
    hyper = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # diag 0: scale 1e-300
    hyper[2, 2] = -1e-290                                         # and indefinite
    # eigenvalue -599 x its mean diagonal: beyond the ladder's last jitter (1e2), within 1e3
    far = np.array([[1.0, 600.0, 0.0], [600.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    A = np.stack([good, near, hyper, far])
    B = rng.standard_normal((4, n, 2))
    B[2, 2] = 0.0
    W = lg._batched_cho_solve(A, B)
    np.testing.assert_allclose(W[3], np.linalg.solve(far, B[3]), rtol=1e-10)
    np.testing.assert_allclose(W[0], np.linalg.solve(good, B[0]), rtol=1e-12)
    expect = np.linalg.solve(near + 1e-9 * scale_near * np.eye(n), B[1])
    np.testing.assert_allclose(W[1], expect, rtol=1e-6)
    np.testing.assert_allclose(W[2], np.linalg.lstsq(hyper, B[2], rcond=None)[0], rtol=1e-12)
    # an asymmetric slice is solved as its symmetric part
    asym = good + np.triu(np.ones((n, n)), 1) * 0.3
    W = lg._batched_cho_solve(np.stack([asym, near]), B[:2])
    np.testing.assert_allclose(W[0], np.linalg.solve(0.5 * (asym + asym.T), B[0]), rtol=1e-10)
    # a slice whose factor gives non-finite solutions is retried with jitter, then solved
    real = sla.cho_solve
    calls = []

    def nan_once(c, b, **kw):
        calls.append(c[0].ndim)
        out = real(c, b, **kw)
        return out * np.nan if len(calls) <= 2 else out

    monkeypatch.setattr(sla, "cho_solve", nan_once)
    W = lg._batched_cho_solve(good[None], B[:1])
    assert calls[:2] == [3, 2] and len(calls) == 3
    np.testing.assert_allclose(W[0], np.linalg.solve(good + 1e-12 * np.mean(np.diag(good))
                                                     * np.eye(n), B[0]), rtol=1e-10)


# --- conditioning -------------------------------------------------------------------------------
def test_condition_joint_gaussian_closed_form():
    """F = Syx (Sxx + r I)^-1, f = mu_y - F mu_x, S = Syy - F Sxy with r = regularization plus
    1e-12 times the mean diagonal of Sxx.  Catches the default regularization, the jitter's sign,
    its factor and its floor at 0 (tiny scales)."""
    rng = np.random.default_rng(4)
    for scale in (1e-8, 1.0, 1e6):
        G = rng.standard_normal((5, 5))
        sig = scale * (G @ G.T)
        mu = rng.standard_normal(5)
        F, f, S = condition_joint_gaussian(mu[None], sig[None], 3)
        r = 1e-6 + 1e-12 * np.mean(np.diag(sig[:3, :3]))
        Fr = sig[3:, :3] @ np.linalg.inv(sig[:3, :3] + r * np.eye(3))
        np.testing.assert_allclose(F[0], Fr, rtol=1e-7)
        np.testing.assert_allclose(f[0], mu[3:] - Fr @ mu[:3], rtol=1e-7, atol=1e-12)
        Sr = sig[3:, 3:] - Fr @ sig[:3, 3:]
        np.testing.assert_allclose(S[0], Sr, rtol=1e-6, atol=1e-9 * scale)
    # regularization 0 on a tiny scale: only the relative jitter regularises
    sig = 1e-8 * (G @ G.T)
    F, _, _ = condition_joint_gaussian(mu[None], sig[None], 3, regularization=0.0)
    r = 1e-12 * np.mean(np.diag(sig[:3, :3]))
    np.testing.assert_allclose(F[0], sig[3:, :3] @ np.linalg.inv(sig[:3, :3] + r * np.eye(3)),
                               rtol=1e-9)


def test_regression_gram_both_forms_equal_the_ridge_closed_form():
    """Few points (N <= dZ, the dual form) and many (the primal form) against
    W = (Z'Z/N + r I)^-1 Z'Y/N, S = Y'Y/N - Y'Z W / N.  Catches the ridge added or set, the
    factorisation skipped, F not written, S not symmetric."""
    rng = np.random.default_rng(5)
    for N, dZ in ((3, 5), (5, 5), (12, 4)):
        Z = rng.standard_normal((2, N, dZ))
        Y = rng.standard_normal((2, N, 2))
        regp = np.array([1e-3, 0.5])
        F, S = np.zeros((2, 2, dZ)), np.zeros((2, 2, 2))
        lg._regression_gram(Z, Y, regp, F, S)
        for b in range(2):
            A = Z[b].T @ Z[b] / N + regp[b] * np.eye(dZ)
            W = np.linalg.solve(A, Z[b].T @ Y[b] / N)
            np.testing.assert_allclose(F[b], W.T, rtol=1e-9, atol=1e-12)
            Sr = Y[b].T @ Y[b] / N - (Y[b].T @ Z[b] / N) @ W
            np.testing.assert_allclose(S[b], Sr, rtol=1e-8, atol=1e-12)
            np.testing.assert_array_equal(S[b], S[b].T)
    with pytest.raises(np.linalg.LinAlgError):
        lg._regression_gram(Z, Y, np.array([-1e3, -1e3]), F, S)


def test_regression_gram_symmetrises_what_it_writes(monkeypatch):
    """A BLAS whose G^T G is not exactly symmetric: S is symmetrised to its symmetric part."""
    rng = np.random.default_rng(6)
    Z, Y = rng.standard_normal((1, 8, 3)), rng.standard_normal((1, 8, 2))
    F, S = np.zeros((1, 2, 3)), np.zeros((1, 2, 2))
    lg._regression_gram(Z, Y, np.array([0.1]), F, S)
    exact = S.copy()
    real = np.matmul
    skew = np.array([[0.0, 1e-3], [-1e-3, 0.0]])

    def lopsided(a, b, out=None, **kw):
        r = real(a, b, **kw)
        if r.shape[-2:] == (2, 2):
            r = r + skew
        if out is not None:
            out[...] = r
            return out
        return r

    monkeypatch.setattr(np, "matmul", lopsided)
    lg._regression_gram(Z, Y, np.array([0.1]), F, S)
    monkeypatch.undo()
    np.testing.assert_allclose(S, exact, rtol=1e-12, atol=1e-15)


def test_no_prior_fit_in_place_and_mixed_batches():
    """Without a prior the fit writes into the caller's arrays and may centre P in place; a batch
    with a zero ridge (regularization 0, no spread) beside normal ones takes the general path
    alone.  Catches overwrite/out handling, the fast mask (& -> |, > -> >=) and the
    symmetrisation of the general path's covariance."""
    rng = np.random.default_rng(7)
    P = rng.standard_normal((3, 6, 5))
    P[1, :, :3] = 0.25                                           # no spread of z in batch 1
    keep = P.copy()
    F, f, S = lg._fit_conditional_without_prior(P, 3, 0.0)
    np.testing.assert_array_equal(P, keep)                       # not centred in place
    for b in range(3):
        mu = P[b].mean(0)
        C = P[b] - mu
        sig = C.T @ C / 6
        Fr, fr, Sr = condition_joint_gaussian(mu[None], sig[None], 3, 0.0)
        np.testing.assert_allclose(F[b], Fr[0], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(f[b], fr[0], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(S[b], Sr[0], rtol=1e-8, atol=1e-12)
    assert np.all(F[1] == 0)
    out = (np.empty_like(F), np.empty_like(f), np.empty_like(S))
    got = lg._fit_conditional_without_prior(P.copy(), 3, 0.0, out=out, overwrite_P=True)
    assert all(g is o for g, o in zip(got, out))
    for a, b in zip(got, (F, f, S)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # through fit_linear_gaussian: no spread at step 0, regularization 0 -> F_0 = 0 exactly
    X = rng.standard_normal((4, 3, 2))
    U = rng.standard_normal((4, 3, 1))
    X[:, 0], U[:, 0] = 0.5, -0.25
    d = fit_linear_gaussian(X, U, regularization=0.0)
    assert np.all(d.Fm[0] == 0) and np.all(np.isfinite(d.dyn_covar))


# --- priors -------------------------------------------------------------------------------------
class EvalOnly:
    """A prior with eval only (no eval_batch): one call per time step."""

    def __init__(self, mu0, Phi, m, n0):
        self.args, self.calls = (mu0, Phi, m, n0), 0

    def eval(self, dX, dU, pts):
        self.calls += 1
        return self.args


class Batched(EvalOnly):
    def eval_batch(self, dX, dU, P):
        return self.args


def test_eval_prior_per_step_or_batched_broadcast_and_checked():
    """Catches: the eval_batch branch (hasattr) ignored, the float64 conversion, the checks."""
    P = np.zeros((4, 3, 5))
    args = (np.arange(5), np.eye(5, dtype=int), 2, 1)
    a = EvalOnly(*args)
    mu0, Phi, m, n0 = eval_prior(a, 2, 1, P)
    assert a.calls == 4 and mu0.shape == (4, 5) and Phi.shape == (4, 5, 5)
    assert all(v.dtype == np.float64 for v in (mu0, Phi, m, n0))
    b = Batched(*args)
    got = eval_prior(b, 2, 1, P)
    assert b.calls == 0
    for x, y in zip(got, (mu0, Phi, m, n0)):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == np.float64
    for i, bad in enumerate((np.inf, np.nan, np.inf, np.nan)):
        params = list(args)
        params[i] = np.full(np.shape(args[i]), bad) if np.ndim(args[i]) else bad
        with pytest.raises(ValueError, match="^prior returned non-finite parameters$"):
            eval_prior(Batched(*params), 2, 1, P)
    with pytest.raises(ValueError, match="^prior strength m must be >= 0$"):
        eval_prior(Batched(args[0], args[1], -1e-9, 1), 2, 1, P)
    eval_prior(Batched(args[0], args[1], 0.0, 1), 2, 1, P)         # m = 0 is allowed
    eval_prior(Batched(args[0], args[1], 0.5, 1), 2, 1, P)         # and m < 1


def test_niw_posterior_closed_form():
    """sigma = (Phi + N S_e + N m / (N + m) dm dm') / (N + n0) conditioned on z; catches the
    default regularization dropped, sigma's symmetrisation, the n0 check, d_in at the edges."""
    rng = np.random.default_rng(8)
    B, N, D, d_in = 2, 4, 5, 3
    P = rng.standard_normal((B, N, D))
    mu0 = rng.standard_normal((B, D))
    G = rng.standard_normal((B, D, D))
    Phi = G @ np.swapaxes(G, -1, -2) + 0.1 * np.triu(np.ones((D, D)), 1)   # asymmetric part
    m, n0 = np.array([1.0, 3.0]), np.array([2.0, 0.5])
    F, f, S = fit_conditional_gaussians(P, d_in, (mu0, Phi, m, n0))
    for b in range(B):
        mu = P[b].mean(0)
        C = P[b] - mu
        dm = mu - mu0[b]
        sig = (Phi[b] + C.T @ C + N * m[b] / (N + m[b]) * np.outer(dm, dm)) / (N + n0[b])
        sig = 0.5 * (sig + sig.T)
        Fr, fr, Sr = condition_joint_gaussian(mu[None], sig[None], d_in, 1e-6)
        np.testing.assert_allclose(F[b], Fr[0], rtol=1e-10)
        np.testing.assert_allclose(S[b], Sr[0], rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"^prior n0 must satisfy N \+ n0 > 0$"):
        fit_conditional_gaussians(P, d_in, (mu0, Phi, m, np.array([-N, 1.0])))
    fit_conditional_gaussians(P, d_in, (mu0, Phi, m, np.array([1.0 - N, 1.0])))  # N + n0 = 1
    # no prior, d_in = 1: the regression path, equal to conditioning the empirical covariance
    F1, f1, S1 = fit_conditional_gaussians(P, 1)
    for b in range(B):
        mu = P[b].mean(0)
        C = P[b] - mu
        Fr, fr, Sr = condition_joint_gaussian(mu[None], (C.T @ C / N)[None], 1, 1e-6)
        np.testing.assert_allclose(F1[b], Fr[0], rtol=1e-8)
    # no prior, d_in = D (nothing to predict) and d_in = 0 (no inputs): the general path
    F0, f0, S0 = fit_conditional_gaussians(P, 0)
    assert F0.shape == (B, D, 0)
    for b in range(B):
        C = P[b] - P[b].mean(0)
        np.testing.assert_allclose(S0[b], C.T @ C / N, rtol=1e-10)
        np.testing.assert_allclose(f0[b], P[b].mean(0), rtol=1e-12)
    FD, fD, SD = fit_conditional_gaussians(P, D)
    assert FD.shape == (B, 0, D) and SD.shape == (B, 0, 0)


def test_fit_with_a_prior_uses_it_at_every_step():
    """fit_linear_gaussian with a prior object goes through eval_prior and the NIW posterior, with
    the caller's regularization.  Catches the prior ignored and the regularization dropped."""
    rng = np.random.default_rng(9)
    X, U = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 1))
    D = 5
    prior = Batched(np.zeros(D), 10.0 * np.eye(D), 1.0, 20.0)
    d = fit_linear_gaussian(X, U, prior=prior, regularization=0.3)
    P = joint_transition_points(X, U)
    params = eval_prior(prior, 2, 1, P)
    F, f, S = fit_conditional_gaussians(P, 3, params, 0.3)
    np.testing.assert_allclose(d.Fm[:-1], F, rtol=1e-12)
    np.testing.assert_allclose(d.dyn_covar[:-1], S, rtol=1e-12)
    plain = fit_linear_gaussian(X, U, regularization=0.3)
    assert np.max(np.abs(plain.Fm - d.Fm)) > 1e-2                # the strong prior matters
    # a regularization this large shows in the result
    F2, _, _ = fit_conditional_gaussians(P, 3, params, 1e-6)
    assert np.max(np.abs(F2 - F)) > 1e-3
