"""The GMM of gps_ros.dynamics.gmm against EM written out here with scipy's Gaussian densities as
the reference: one EM step from a known start (maximum likelihood, MAP covariances, eigenvalue
floor), the densities and responsibilities, the convergence and warm-start rules, re-seeding, the
moment-matched NIW prior and the input errors.  Each test names the bugs it catches (mutants of
``bench/mutation_score.py`` that survived tests/test_dynamics.py)."""
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gps_ros.dynamics import gmm as gmm_mod
from gps_ros.dynamics.gmm import GMM


def blobs(seed=0, n_per=40, d=3, sep=4.0, K=3):
    rng = np.random.default_rng(seed)
    means = sep * rng.standard_normal((K, d)) + 5.0
    scales = rng.uniform(0.5, 3.0, d)                   # unequal scales: standardisation matters
    pts = [means[k] + rng.standard_normal((n_per, d)) @ np.diag(scales) * (0.5 + 0.3 * k)
           for k in range(K)]
    return np.concatenate(pts)


def standardise(X):
    c, s = X.mean(0), X.std(0)
    return c, s, (X - c) / s


def m_step(Z, resp, reg, cov_prior=0.0, G=None, eigreg=False):
    """EM's M-step in standardised units, written out."""
    Nk = resp.sum(0)
    mu = resp.T @ Z / Nk[:, None]
    sig = []
    for k in range(resp.shape[1]):
        Zc = Z - mu[k]
        S = (resp[:, k, None] * Zc).T @ Zc
        S = (S + cov_prior * G) / (Nk[k] + cov_prior) if cov_prior else S / Nk[k]
        if eigreg:
            w, V = np.linalg.eigh(S)
            w = np.maximum(w, max(reg, 1e-6 * w[-1]))
            S = (V * w) @ V.T
        else:
            S = S + reg * np.eye(len(S))
        sig.append(S)
    return mu, np.array(sig), np.log(Nk / Nk.sum())


def log_joint(Z, mu, sig, logw):
    return np.stack([logw[k] + multivariate_normal(mu[k], sig[k]).logpdf(Z)
                     for k in range(len(mu))], axis=1)


@pytest.mark.parametrize("kw", [dict(), dict(cov_prior=3.0), dict(cov_prior=0.5),
                                dict(eigreg=True, reg=1e-2)])
def test_one_em_step_from_sequential_chunks_is_em_written_out(kw):
    """Catches: the chunk labels, the standardisation, the M-step's means / weighted covariances
    / MAP shrinkage / regulariser / eigenvalue floor, the E-step's densities and normalisation,
    the log-Jacobian of the reported log-likelihood, the conversion back to data units."""
    X = blobs()
    n, d = X.shape
    K = 3
    reg = kw.get("reg", 1e-6)
    g = GMM(init_sequential=True, **kw)
    g.update(X, K, max_iterations=1)
    c, s, Z = standardise(X)
    G = np.cov(Z.T, bias=True) + reg * np.eye(d)
    labels = (np.arange(n) * K) // n
    resp0 = np.eye(K)[labels]
    args = dict(reg=reg, cov_prior=kw.get("cov_prior", 0.0), G=G, eigreg=kw.get("eigreg", False))
    mu0, sig0, lw0 = m_step(Z, resp0, **args)
    lj = log_joint(Z, mu0, sig0, lw0)
    lse = logsumexp(lj, axis=1)
    resp1 = np.exp(lj - lse[:, None])
    mu1, sig1, lw1 = m_step(Z, resp1, **args)
    assert g.n_iterations == 1 and not g.converged and g.N == n and g.n_reseeds == 0
    np.testing.assert_allclose(g.loglik_history[0], lse.mean() - np.log(s).sum(), rtol=1e-10)
    np.testing.assert_allclose(g.mu, c + mu1 * s, rtol=1e-9)
    np.testing.assert_allclose(g.sigma, sig1 * np.outer(s, s), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g.logmass, lw1, rtol=1e-9, atol=1e-12)
    assert (g.K, g.dim) == (K, d)


def test_densities_and_responsibilities_are_the_mixture_written_out():
    """log_likelihood and responsibilities in data units against scipy's densities (the
    standardisation must cancel)."""
    X = blobs(seed=1)
    g = GMM(seed=3)
    g.update(X, 3)
    pts = X[::7] + 0.3
    lj = log_joint(pts, g.mu, g.sigma, g.logmass)
    np.testing.assert_allclose(g.log_likelihood(pts), logsumexp(lj, axis=1), rtol=1e-9)
    np.testing.assert_allclose(g.responsibilities(pts), np.exp(lj - logsumexp(lj, axis=1)[:, None]),
                               rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(g.log_likelihood(pts[0]), logsumexp(lj[0]), rtol=1e-9)  # one point
    # far from every cluster (no finite density in float64): the weights, not NaN
    far = np.full((1, 3), 1e200)
    np.testing.assert_allclose(g.responsibilities(far)[0], np.exp(g.logmass), rtol=1e-12)


def test_convergence_rule_and_history():
    """Stops when |ll - prev| <= tol max(1, |ll|): never with tol 0 (all max_iterations run),
    at the second E-step with a huge tol.  The history never decreases.  Catches the rule's
    comparison, its scale and the iteration count."""
    X = blobs(seed=2)
    g = GMM(init_sequential=True)
    g.update(X, 3, max_iterations=7, tol=0.0)
    assert g.n_iterations == 7 and g.converged is False and len(g.loglik_history) == 7
    assert np.all(np.diff(g.loglik_history) >= -1e-9)
    g = GMM(init_sequential=True)
    g.update(X, 3, max_iterations=50, tol=1e9)
    assert g.converged and g.n_iterations == 2 and len(g.loglik_history) == 2
    # the rule relative to |ll|: a tolerance just above the last step's relative change stops
    g = GMM(init_sequential=True, warmstart=False)
    g.update(X, 3, max_iterations=4, tol=0.0)
    h = g.loglik_history
    step = abs(h[2] - h[1]) / max(1.0, abs(h[2]))
    g2 = GMM(init_sequential=True, warmstart=False)
    g2.update(X, 3, max_iterations=50, tol=step * 1.0001)
    assert g2.converged and g2.n_iterations <= 3
    g3 = GMM(init_sequential=True, warmstart=False)
    g3.update(X, 3, max_iterations=1, tol=1e9)
    assert not g3.converged and g3.n_iterations == 1      # one iteration: nothing to compare
    g4 = GMM(init_sequential=True)
    g4.update(X, 3, max_iterations=0)                      # at least one iteration
    assert g4.n_iterations == 1


def test_warm_start_only_when_at_least_as_likely():
    X = blobs(seed=4)
    g = GMM(seed=0)
    g.update(X, 3)
    assert g.warm_started is False
    g.update(X, 3)                                         # the same data: the old fit is best
    assert g.warm_started
    g.update(X, 2)                                         # another K: fresh
    assert not g.warm_started
    g.update(X[:, :2], 2)                                  # another dimension: fresh
    assert not g.warm_started
    cold = GMM(seed=0, warmstart=False)
    cold.update(X, 3)
    cold.update(X, 3)
    assert not cold.warm_started
    # a previous fit far worse than a fresh start is not kept
    g = GMM(seed=0)
    g.update(X, 3)
    g.mu = g.mu + 1e3
    g.update(X, 3)
    assert not g.warm_started and np.all(np.abs(g.mu) < 100)


def test_a_cluster_without_points_is_reseeded_at_the_worst_explained_point():
    """min mass min(1, n / (4K)); the re-seeded cluster sits on the point of lowest density with
    the global covariance (plus reg) and mass min_mass.  Catches the threshold, the order, the
    covariance and the count."""
    X = blobs(seed=5, n_per=30)
    n, d = X.shape
    g = GMM(init_sequential=True)
    c, s, Z = standardise(X)
    mu = np.stack([Z[:30].mean(0), Z[30:60].mean(0), np.full(d, 1e3)])   # cluster 2: far away
    sig = np.tile(np.eye(d), (3, 1, 1))
    g._set_params(mu, sig, np.zeros(3))
    resp, lse, _ = g._e_step(Z)
    assert resp[:, 2].sum() < 1.0
    reseeded = g._m_step(Z, resp, lse)
    assert reseeded and g.n_reseeds == 1
    worst = np.argmin(lse)
    np.testing.assert_allclose(g._mu_s[2], Z[worst])
    G = np.cov(Z.T, bias=True) + g.reg * np.eye(d)
    np.testing.assert_allclose(g._sig_s[2], G, rtol=1e-10)
    Nk = resp.sum(0)
    Nk[2] = 1.0
    np.testing.assert_allclose(np.exp(g.logmass), Nk / Nk.sum(), rtol=1e-9)
    # a cluster with mass just above the threshold keeps its fit
    resp2 = resp.copy()
    resp2[:, 2] = 0.0
    resp2[0, 2] = 1.0 + 1e-9
    assert not GMM()._m_step(Z, resp2, lse)


def test_reseed_threshold_scales_with_points_per_cluster():
    """With few points per cluster (n / (4K) < 1) the threshold is n / (4K): a cluster with 0.6
    points' mass of 8 points and 3 clusters (threshold 2/3) is re-seeded, one with 0.7 is not."""
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((8, 2))
    for mass, expect in ((0.6, True), (0.7, False)):
        resp = np.zeros((8, 3))
        resp[:4, 0] = 1.0
        resp[4:, 1] = 1.0
        resp[0, 0] -= mass
        resp[0, 2] = mass
        g = GMM()
        assert g._m_step(Z, resp, None) == expect


def test_standardizer_floors():
    g = GMM()
    X = np.array([[1.0, 5.0, 0.0], [5.0, 5.0, 0.0]])
    c, s = g._standardizer(X)
    np.testing.assert_array_equal(c, [3.0, 5.0, 0.0])
    np.testing.assert_array_equal(s, [2.0, 2e-8, 2e-8])
    c, s = g._standardizer(np.full((4, 2), 3.0))               # nothing varies: unit scales
    np.testing.assert_array_equal(s, [1.0, 1.0])


def test_cholesky_ladder_and_diagonal_fallback():
    """PD: the plain factor; PSD-singular: jitter 1e-10 x mean |diag|; beyond the ladder's last
    jitter (1e9 x mean |diag|): the diagonal factor sqrt(max(|diag|, 1))."""
    rng = np.random.default_rng(7)
    G = rng.standard_normal((3, 3))
    pd = G @ G.T + np.eye(3)
    v = rng.standard_normal(3)
    sing = np.outer(v, v)
    bad = np.array([[4.0, 1e12, 0.0], [1e12, 0.25, 0.0], [0.0, 0.0, 1.0]])  # eigenvalue -1e12
    L = gmm_mod._chol_lower(np.stack([pd, sing, bad]))
    np.testing.assert_allclose(L[0], np.linalg.cholesky(pd), rtol=1e-12)
    scale = np.mean(np.abs(np.diag(sing)))
    np.testing.assert_allclose(L[1], np.linalg.cholesky(sing + 1e-10 * scale * np.eye(3)),
                               rtol=1e-6, atol=1e-9 * np.sqrt(scale))
    np.testing.assert_allclose(L[2], np.diag([2.0, 1.0, 1.0]), rtol=1e-12)
    Li = gmm_mod._tri_inv_lower(L[:2])
    np.testing.assert_allclose(Li @ L[:2], np.tile(np.eye(3), (2, 1, 1)), atol=1e-6)


def test_inference_batch_is_the_moment_matched_mixture():
    """w = mean responsibilities of each dataset; mu0 = sum w mu, Phi = sum w (Sigma +
    (mu - mu0)(mu - mu0)'); m = n0 = 1.  Catches the weights' averaging and normalisation and
    every term of the moment match."""
    X = blobs(seed=8)
    g = GMM(seed=0)
    g.update(X, 3)
    sets = np.stack([X[:4] + 0.1, X[[0, 50, 100, 110]]])
    mu0, Phi, m, n0 = g.inference_batch(sets)
    for b in range(2):
        w = g.responsibilities(sets[b]).mean(0)
        w /= w.sum()
        mu_r = w @ g.mu
        Phi_r = sum(w[k] * (g.sigma[k] + np.outer(g.mu[k] - mu_r, g.mu[k] - mu_r))
                    for k in range(3))
        np.testing.assert_allclose(mu0[b], mu_r, rtol=1e-9)
        np.testing.assert_allclose(Phi[b], Phi_r, rtol=1e-8)
        np.testing.assert_array_equal(Phi[b], Phi[b].T)
    np.testing.assert_array_equal(m, [1.0, 1.0])
    np.testing.assert_array_equal(n0, [1.0, 1.0])
    assert m is not n0
    one = g.inference(sets[1])
    np.testing.assert_allclose(one[0], mu0[1], rtol=1e-12)
    assert one[2:] == (1.0, 1.0) and isinstance(one[2], float)


def test_errors():
    g = GMM()
    with pytest.raises(RuntimeError, match=r"^GMM has not been fitted; call update\(\) first$"):
        g.log_likelihood(np.zeros((1, 2)))
    for bad in (np.zeros(5), np.zeros((0, 2)), np.zeros((3, 0))):
        with pytest.raises(ValueError, match=r"data must be \(n, d\) with n, d >= 1; got"):
            g.update(bad, 1)
    with pytest.raises(ValueError, match="^GMM data must be finite$"):
        g.update(np.array([[0.0, np.nan]]), 1)
    with pytest.raises(ValueError, match="^cov_prior must be >= 0$"):
        GMM(cov_prior=-1.0)
    with pytest.raises(ValueError, match="^cov_prior must be >= 0$"):
        GMM(cov_prior=float("nan"))
    g.update(blobs(seed=9), 0)                                  # K clamped to 1
    assert g.K == 1
    with pytest.raises(ValueError, match="points have dimension 2, GMM has 3"):
        g.responsibilities(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"pts must be \(B, m, d\); got \(4, 3\)"):
        g.inference_batch(np.zeros((4, 3)))
    assert GMM().K == 0 and GMM().dim == 0 and not GMM().fitted and g.fitted


def test_kmeans_initialisation_finds_separated_clusters():
    """k-means++ seeding and Lloyd iterations recover well separated clusters exactly (the
    labels partition the three blobs); one Lloyd iteration at least."""
    X = blobs(seed=10, sep=30.0)
    _, _, Z = standardise(X)
    for iters in (10, 0):
        labels = GMM(seed=1, kmeans_iterations=iters)._kmeans(Z, 3)
        groups = [set(labels[i * 40:(i + 1) * 40]) for i in range(3)]
        assert all(len(gr) == 1 for gr in groups) and len(set.union(*groups)) == 3
    # all points equal: every centre picked at random, one label
    same = GMM(seed=2)._kmeans(np.zeros((6, 2)), 3)
    assert len(set(same)) == 1


def test_defaults_and_a_fresh_mixture():
    """The documented defaults and the state before any fit."""
    import inspect

    sig = inspect.signature(GMM)
    assert {k: v.default for k, v in sig.parameters.items()} == dict(
        init_sequential=False, eigreg=False, warmstart=True, seed=0, reg=1e-6,
        kmeans_iterations=10, cov_prior=0.0)
    up = inspect.signature(GMM.update).parameters
    assert (up["max_iterations"].default, up["tol"].default) == (100, 1e-5)
    g = GMM()
    assert g.mu is None and g.sigma is None and g.logmass is None and g._c is None
    assert g._s is None and g._gcov is None and g.loglik_history == []
    assert (g.n_iterations, g.N, g.n_reseeds) == (0, 0, 0)
    assert g.converged is False and g.warm_started is False
    X = blobs(seed=11)
    a, b = GMM(), GMM(seed=0, init_sequential=False, kmeans_iterations=10)
    a.update(X, 3)
    b.update(X, 3, max_iterations=100, tol=1e-5)
    np.testing.assert_array_equal(a.mu, b.mu)


def test_the_debug_line_reports_the_fit(caplog):
    import logging

    X = blobs(seed=12)
    g = GMM(seed=0)
    with caplog.at_level(logging.DEBUG, logger="gps_ros.dynamics.gmm"):
        g.update(X, 3)
    want = (f"GMM EM: K=3 n=120 d=3 iterations={g.n_iterations} converged={g.converged} "
            f"ll={g.loglik_history[-1]:.4f} reseeds={g.n_reseeds}")
    assert [r.getMessage() for r in caplog.records] == [want]


def test_triangular_inverse_without_batched_scipy(monkeypatch):
    """scipy before batch support (setup.py allows 1.10): the inverses slice by slice."""
    import scipy.linalg as sla

    rng = np.random.default_rng(13)
    L = np.tril(rng.standard_normal((2, 3, 3))) + 3 * np.eye(3)
    real = sla.solve_triangular

    def old_scipy(a, b, **kw):
        if np.ndim(a) > 2:
            raise ValueError("expected square matrix")
        return real(a, b, **kw)

    monkeypatch.setattr(sla, "solve_triangular", old_scipy)
    Li = gmm_mod._tri_inv_lower(L)
    np.testing.assert_allclose(Li, np.linalg.inv(L), rtol=1e-12)


def test_cholesky_batch_once_and_the_ladder_rungs(monkeypatch):
    """A PD batch: one batched factorisation.  Two slices of three dimensions where one needs
    jitter: the second rung (1e-9 x mean |diag|) for eigenvalue -5e-10; an eigenvalue between the
    last rung (1e8) and the next (1e9): the diagonal fallback."""
    rng = np.random.default_rng(14)
    G = rng.standard_normal((2, 3, 3))
    pd = G @ np.swapaxes(G, -1, -2) + np.eye(3)
    calls = []
    real = np.linalg.cholesky
    monkeypatch.setattr(np.linalg, "cholesky", lambda a: (calls.append(np.shape(a)), real(a))[1])
    L = gmm_mod._chol_lower(pd)
    assert calls == [(2, 3, 3)]
    np.testing.assert_allclose(L, real(pd), rtol=1e-12)
    monkeypatch.undo()
    Q = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    near = Q @ np.diag([2.0, 1.0, 0.0]) @ Q.T
    scale = np.mean(np.abs(np.diag(near)))
    near = Q @ np.diag([2.0, 1.0, -5e-10 * scale]) @ Q.T
    scale = np.mean(np.abs(np.diag(near)))
    beyond = np.array([[1.0, 5e8, 0.0], [5e8, 1.0, 0.0], [0.0, 0.0, 9.0]])
    L = gmm_mod._chol_lower(np.stack([near, beyond]))
    np.testing.assert_allclose(L[0], real(near + 1e-9 * scale * np.eye(3)), rtol=1e-9)
    np.testing.assert_allclose(L[1], np.diag([1.0, 1.0, 3.0]), rtol=1e-12)


def reference_kmeans(Z, K, seed, iterations):
    """k-means++ seeding (first centre uniform, then proportional to the squared distance to the
    nearest centre) and Lloyd iterations until the labels repeat, with the same draws."""
    rng = np.random.default_rng(seed)
    n = len(Z)
    centers = [Z[rng.integers(n)]]
    for _ in range(1, K):
        d2 = np.min([np.sum((Z - c) ** 2, axis=1) for c in centers], axis=0)
        centers.append(Z[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else Z[rng.integers(n)])
    centers = np.array(centers)
    labels = None
    for _ in range(max(iterations, 1)):
        new = np.argmin(((Z[:, None] - centers[None]) ** 2).sum(-1), axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for k in range(K):
            if np.any(labels == k):
                centers[k] = Z[labels == k].mean(0)
    return labels


@pytest.mark.parametrize("iterations", [0, 1, 2, 10])
def test_kmeans_is_kmeans_plus_plus_and_lloyd(iterations):
    """Overlapping blobs (the seeding and every Lloyd step matter): the labels of k-means++ and
    Lloyd written out with the same random draws.  Catches the distance formula, the seeding
    weights, the empty-cluster rule and the stopping rule."""
    X = blobs(seed=15, sep=1.0, K=4)
    _, _, Z = standardise(X)
    for seed in (0, 1, 2):
        got = GMM(seed=seed, kmeans_iterations=iterations)._kmeans(Z, 4)
        np.testing.assert_array_equal(got, reference_kmeans(Z, 4, seed, iterations))


def test_points_without_density_anywhere():
    """No finite density at all: log-likelihood -inf (not NaN), responsibilities and the prior's
    weights the mixture weights, the E-step's mean -inf."""
    X = blobs(seed=16)
    g = GMM(seed=0)
    g.update(X, 3)
    far = np.full((2, 3), 1e200)
    assert np.all(g.log_likelihood(far) == -np.inf)
    resp, lse, ll = g._e_step((far - g._c) / g._s)
    assert ll == -np.inf and np.all(lse == -np.inf)
    np.testing.assert_allclose(resp, np.tile(np.exp(g.logmass), (2, 1)), rtol=1e-12)
    mu0, _, _, _ = g.inference(far)
    np.testing.assert_allclose(mu0, np.exp(g.logmass) @ g.mu, rtol=1e-9)
    assert np.all(g._log_obs((far - g._c) / g._s) == -np.inf)


def test_reseeds_add_up_and_small_masses_keep_their_weight():
    rng = np.random.default_rng(17)
    Z = rng.standard_normal((8, 2))
    Z -= Z.mean(0)
    resp = np.zeros((8, 3))
    resp[:4, 0] = 1.0
    resp[4:, 1] = 1.0
    g = GMM()
    g._m_step(Z, resp, None)
    g._m_step(Z, resp, None)
    assert g.n_reseeds == 2
    resp[0, 0], resp[0, 2] = 0.3, 0.7                  # 0.7 >= 8 / 12: kept, weight 0.7 / 8
    g._m_step(Z, resp, None)
    np.testing.assert_allclose(np.exp(g.logmass), [3.3 / 8, 4 / 8, 0.7 / 8], rtol=1e-12)


def test_one_dimensional_data_and_symmetrised_covariances():
    g = GMM(seed=0)
    g.update(np.random.default_rng(18).standard_normal((50, 1)), 2)
    assert g.sigma.shape == (2, 1, 1)
    asym = np.array([[[2.0, 0.3], [0.1, 1.0]]])
    for eigreg in (False, True):
        out = GMM(eigreg=eigreg)._regularize(asym.copy())
        np.testing.assert_array_equal(out, np.swapaxes(out, -1, -2))
        if not eigreg:
            np.testing.assert_allclose(out[0], [[2.0 + 1e-6, 0.2], [0.2, 1.0 + 1e-6]])
    h = GMM()
    h._set_params(np.zeros((1, 2)), asym.copy(), np.zeros(1))
    np.testing.assert_allclose(h._sig_s[0], [[2.0, 0.2], [0.2, 1.0]])


def test_dimension_check_of_a_batch():
    g = GMM(seed=0)
    g.update(blobs(seed=19), 2)
    with pytest.raises(ValueError, match="^points have dimension 2, GMM has 3$"):
        g.inference_batch(np.zeros((1, 4, 2)))
