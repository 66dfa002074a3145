"""Dynamics priors on few trials: the GMM's MAP covariance (cov_prior), and what the learned global
priors (the neural network, the sparse GP: the same linearised mechanism) share."""
import pickle

import numpy as np
import pytest

from gps_ros.config import parse_config
from gps_ros.dynamics import DynamicsFitter, DynamicsPriorGMM, GMM, fit_linear_gaussian

torch = pytest.importorskip("torch")
from gps_ros.dynamics.nn_prior import DynamicsPriorNN  # noqa: E402


def _learned(kind: str, **kw):
    """A learned global prior: ``nn`` (DynamicsPriorNN) or ``gp`` (DynamicsPriorGP, needs
    gpytorch)."""
    if kind == "gp":
        pytest.importorskip("gpytorch")
        from gps_ros.dynamics.gp_prior import DynamicsPriorGP
        return DynamicsPriorGP(**kw)
    return DynamicsPriorNN(**kw)


# ----------------------------------------------------------------------------- a test system
def _switching_system(dX=8, dU=3, seed=0):
    """A nonlinear system: two linear regimes blended by tanh of the first state."""
    rng = np.random.default_rng(seed)
    A1 = np.eye(dX) + 0.1 * rng.standard_normal((dX, dX)) / np.sqrt(dX)
    A2 = np.eye(dX) + 0.1 * rng.standard_normal((dX, dX)) / np.sqrt(dX)
    B = 0.2 * rng.standard_normal((dX, dU))

    def step(x, u):
        w = 0.5 * (1 + np.tanh(3 * x[..., :1]))
        return (w * (x @ A1.T) + (1 - w) * (x @ A2.T)) * 0.97 + u @ B.T
    return step


def _trials(step, n, T, dX, dU, seed, x0=None, noise=0.3):
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, dX))
    U = noise * rng.standard_normal((n, T, dU))
    X[:, 0] = (np.zeros(dX) if x0 is None else x0) + 0.3 * rng.standard_normal((n, dX))
    for t in range(T - 1):
        X[:, t + 1] = step(X[:, t], U[:, t]) + 1e-3 * rng.standard_normal((n, dX))
    return X, U


def _heldout_rms(dyn, X, U):
    XU = np.concatenate([X[:, :-1], U[:, :-1]], axis=2)
    pred = np.einsum("tij,ntj->nti", dyn.Fm[:-1], XU) + dyn.fv[None, :-1]
    return float(np.sqrt(np.mean((X[:, 1:] - pred) ** 2)))


# ----------------------------------------------------------------------------- GMM cov_prior
def test_cov_prior_is_the_map_covariance_of_hard_clusters():
    """Two far-apart clusters (responsibilities 0/1): each covariance is exactly
    (n_k S_k + kappa G) / (n_k + kappa), G the global covariance (+ reg), in standardised units."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((60, 3)) * [1.0, 0.5, 0.2]
    b = rng.standard_normal((40, 3)) * [0.3, 1.0, 0.7] + 50.0
    data = np.concatenate([a, b])
    kappa = 7.0
    g = GMM(cov_prior=kappa, seed=0, reg=1e-6)
    g.update(data, 2, max_iterations=50)
    c, s = data.mean(0), data.std(0)
    Z = (data - c) / s
    G = np.cov(Z.T, bias=True) + 1e-6 * np.eye(3)
    for pts in (Z[:60], Z[60:]):
        k = int(np.argmin(np.linalg.norm(g._mu_s - pts.mean(0), axis=1)))
        S = np.cov(pts.T, bias=True)
        expect = (len(pts) * S + kappa * G) / (len(pts) + kappa) + 1e-6 * np.eye(3)
        np.testing.assert_allclose(g._sig_s[k], expect, rtol=1e-3)   # responsibilities ~1e-6, not 0


def test_cov_prior_zero_is_plain_maximum_likelihood():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((100, 4))
    g0, g1 = GMM(seed=3), GMM(seed=3, cov_prior=0.0)
    g0.update(data, 3, max_iterations=20)
    g1.update(data, 3, max_iterations=20)
    np.testing.assert_array_equal(g0.sigma, g1.sigma)
    with pytest.raises(ValueError):
        GMM(cov_prior=-1.0)


def test_cov_prior_lowers_held_out_error_on_few_trials():
    """The bench_prior claim in small: few trials of a nonlinear system in 19 dimensions, as many
    clusters as the shipped rule gives; the MAP covariances predict fresh trials better than the
    maximum-likelihood ones (which collapse onto the few points of each cluster)."""
    dX, dU, T = 8, 3, 40
    step = _switching_system(dX, dU)
    errs = {}
    for kappa in (0.0, 10.0):
        e = []
        for seed in range(2):
            Xtr, Utr = _trials(step, 3, T, dX, dU, seed)
            Xte, Ute = _trials(step, 10, T, dX, dU, 100 + seed)
            prior = DynamicsPriorGMM(max_clusters=10, min_samples_per_cluster=10, max_samples=20,
                                     seed=0, em_iterations=30, gmm_kwargs=dict(cov_prior=kappa))
            prior.update(Xtr, Utr)
            e.append(_heldout_rms(fit_linear_gaussian(Xtr[:1], Utr[:1], prior=prior), Xte, Ute))
        errs[kappa] = np.mean(e)
    assert errs[10.0] < 0.8 * errs[0.0], errs


# ----------------------------------------------------------------------------- NN prior
def _linear_system(dX=6, dU=2, seed=0):
    rng = np.random.default_rng(seed)
    A = np.eye(dX) + 0.05 * rng.standard_normal((dX, dX))
    B = 0.3 * rng.standard_normal((dX, dU))
    return A, B, (lambda x, u: x @ A.T + u @ B.T + 0.01)


def test_nn_prior_learns_a_linear_system_and_its_jacobian():
    dX, dU, T = 6, 2, 40
    A, B, step = _linear_system(dX, dU)
    X, U = _trials(step, 20, T, dX, dU, 0, noise=1.0)
    p = DynamicsPriorNN(hidden=[32, 32], first_steps=600, lr=5e-3, seed=0)
    p.update(X, U)
    z = np.concatenate([X[:5, 10], U[:5, 10]], axis=1)
    fz, J = p.linearize(z)
    np.testing.assert_allclose(fz, step(z[:, :dX], z[:, dX:]), atol=0.05)
    assert np.max(np.abs(J - np.hstack([A, B]))) < 0.1, np.max(np.abs(J - np.hstack([A, B])))
    # the NIW prior: shapes, symmetric PSD Phi, mean = [z̄, f(z̄)], strength as pseudo-count
    P = np.concatenate([X[:3, :-1], U[:3, :-1], X[:3, 1:]], axis=2).transpose(1, 0, 2)
    mu0, Phi, m, n0 = p.eval_batch(dX, dU, P)
    D = 2 * dX + dU
    assert mu0.shape == (T - 1, D) and Phi.shape == (T - 1, D, D)
    np.testing.assert_allclose(Phi, np.swapaxes(Phi, -1, -2), atol=1e-12)
    assert np.linalg.eigvalsh(Phi).min() > -1e-9
    np.testing.assert_allclose(mu0[:, :dX + dU], P[:, :, :dX + dU].mean(axis=1))
    assert np.all(m == p.strength) and np.all(n0 == p.strength)


@pytest.mark.parametrize("kind,kw", [("nn", dict(hidden=[32, 32], first_steps=600, lr=5e-3)),
                                     ("gp", dict(inducing=48, first_steps=800))])
def test_a_learned_prior_gives_its_slopes_from_a_single_trial(kind, kw):
    """With one trial per condition the data carry no slope information: the fit takes the
    global model's Jacobian (close to the true [A B]) instead of zeros."""
    dX, dU, T = 6, 2, 30
    A, B, step = _linear_system(dX, dU, seed=2)
    X, U = _trials(step, 20, T, dX, dU, 1, noise=1.0)
    p = _learned(kind, seed=0, **kw)
    p.update(X, U)
    X1, U1 = _trials(step, 1, T, dX, dU, 7, noise=1.0)
    dyn = fit_linear_gaussian(X1, U1, prior=p)
    plain = fit_linear_gaussian(X1, U1)
    err_nn = np.max(np.abs(dyn.Fm[:-1] - np.hstack([A, B])))
    err_plain = np.max(np.abs(plain.Fm[:-1] - np.hstack([A, B])))
    assert err_nn < 0.15 and err_plain > 0.5, (err_nn, err_plain)
    Xte, Ute = _trials(step, 10, T, dX, dU, 8, noise=1.0)
    assert _heldout_rms(dyn, Xte, Ute) < 0.5 * _heldout_rms(plain, Xte, Ute)
    assert np.linalg.eigvalsh(dyn.dyn_covar[:-1]).min() >= 0.0


@pytest.mark.parametrize("kind,kw", [("nn", dict(hidden=[32], first_steps=50, steps=20)),
                                     ("gp", dict(inducing=16, first_steps=40, steps=15))])
def test_a_learned_prior_is_incremental_and_survives_pickling(kind, kw):
    """A run's state pickles the model, its optimiser and minibatch stream (the GP: its
    likelihood and GPyTorch's seeded first-step jitter too): a copy refitted on the same new
    trials gives the same predictions, bit for bit."""
    dX, dU, T = 6, 2, 20
    _, _, step = _linear_system(dX, dU)
    X, U = _trials(step, 6, T, dX, dU, 0)
    p = _learned(kind, max_samples=8, seed=0, **kw)
    p.update(X[:4], U[:4])
    assert p.n_refits == 1 and p.n_trials == 4
    q = pickle.loads(pickle.dumps(p))
    z = np.concatenate([X[0, :5], U[0, :5]], axis=1)
    np.testing.assert_array_equal(p.linearize(z)[1], q.linearize(z)[1])
    p.update(X[4:], U[4:])
    q.update(X[4:], U[4:])               # same buffer, optimiser and minibatch stream: same result
    np.testing.assert_array_equal(p.predict(X[0], U[0]), q.predict(X[0], U[0]))
    p.update(X, U)
    assert p.n_trials == 8                # newest max_samples kept
    with pytest.raises(ValueError):
        p.update(X[..., :3], U)
    with pytest.raises(RuntimeError):
        _learned(kind).eval_batch(dX, dU, np.zeros((2, 1, 2 * dX + dU)))


@pytest.mark.parametrize("kind,kw", [("nn", dict(hidden=[8])), ("gp", dict(inducing=8))])
def test_a_learned_prior_does_not_touch_torch_global_rng(kind, kw):
    p = _learned(kind, first_steps=5, seed=9, **kw)
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    _, _, step = _linear_system()
    X, U = _trials(step, 2, 10, 6, 2, 0)
    p.update(X, U)
    assert torch.equal(torch.rand(3), expect)


def test_config_selects_the_prior():
    base = {"name": "t", "agent": {"conditions": [{"target": [0.5, 0.0, 0.4]}]}}
    for kind, cls in (("gmm_prior", DynamicsPriorGMM), ("nn_prior", DynamicsPriorNN)):
        cfg = parse_config({**base, "dynamics": {"type": kind}}, "t")
        f = DynamicsFitter.from_config(cfg.dynamics, seed=1)
        assert isinstance(f.prior, cls)
    cfg = parse_config({**base, "dynamics": {"type": "linear_regression"}}, "t")
    assert DynamicsFitter.from_config(cfg.dynamics).prior is None
    cfg = parse_config({**base, "dynamics": {"prior": {"cov_prior": 3.0}}}, "t")
    assert DynamicsFitter.from_config(cfg.dynamics).prior.gmm.cov_prior == 3.0


# ----------------------------------------------------------------------------- in training
def _nn_small(d):
    d["dynamics"] = {"type": "nn_prior", "nn": {"hidden": [32, 32], "first_steps": 200, "steps": 50}}
    return d


def test_training_with_the_nn_prior_learns_and_resumes_exactly(tmp_path):
    """LQR-FLM with the network prior on the CI reach task: the cost falls, and a run stopped after
    2 iterations and resumed (the network, its optimiser and minibatch stream pickled in the run
    state) ends identical to the uninterrupted one."""
    import json

    from conftest import small_config_dict
    from gps_ros.train import resume, train

    cfg = parse_config(_nn_small(small_config_dict()), "t")
    full = train(cfg, tmp_path / "full", iterations=3, progress=False)
    rows = [json.loads(l) for l in (full / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(rows[-1]["final_distance"]) < 0.7 * np.mean(rows[0]["final_distance"])
    part = train(cfg, tmp_path / "part", iterations=2, progress=False)
    resume(part, iterations=3, progress=False)
    rows2 = [json.loads(l) for l in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["final_distance"] for r in rows2] == [r["final_distance"] for r in rows]


def test_vision_mdgps_runs_with_the_nn_prior(tmp_path):
    """The visuomotor task's state (joints, EE points, target-relative points) through the network
    prior: two MDGPS iterations with camera frames.  The saved iteration-2 dynamics have the vision
    state's shape, and they predict the joint velocities of the iteration's own trials 3x better
    than the best trivial predictor ("next = current", the same plus the mean step, the mean of
    the trials): measured RMS 0.034-0.041 rad/s against 0.197-0.28.  (The prior network alone, at
    CI size — 200 + 50 steps — is at 0.16-0.22: no better than "current plus the mean step" on
    condition 1, so it is not asserted here; the prior's learning is shown on the reach task
    above.)"""
    from conftest import small_vision_config_dict
    from gps_ros.dynamics import LinearGaussianDynamics
    from gps_ros.sample import Trajectories
    from gps_ros.train import train

    cfg = parse_config(_nn_small(small_vision_config_dict()), "t")
    out = train(cfg, tmp_path / "v", iterations=2, progress=False)
    it = out / "iterations" / "0002"
    arrays = dict(np.load(it / "dynamics.npz"))
    for m in range(2):
        tr = Trajectories.load(it / f"trials_c{m:02d}.npz").valid()
        dyn = LinearGaussianDynamics(**{k.split("/")[1]: v for k, v in arrays.items()
                                        if k.startswith(f"c{m:02d}/")})
        assert dyn.Fm.shape == (cfg.agent.T, tr.dX, tr.dX + tr.dU) and np.isfinite(dyn.Fm).all()
        X, U, nxt = tr.X[:, :-1], tr.U[:, :-1], tr.X[:, 1:]
        fit = np.einsum("tij,ntj->nti", dyn.Fm[:-1], np.concatenate([X, U], 2)) + dyn.fv[:-1]

        def rms(pred):
            return float(np.sqrt(((pred - nxt)[..., 7:14] ** 2).mean()))
        step = (nxt - X).reshape(-1, tr.dX).mean(0)
        trivial = min(rms(X), rms(X + step), rms(np.broadcast_to(nxt.mean(0), nxt.shape)))
        assert rms(fit) < trivial / 3, (m, rms(fit), trivial)
