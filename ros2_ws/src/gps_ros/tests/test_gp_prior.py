"""The Gaussian-process dynamics prior (gps_ros.dynamics.gp_prior): its posterior on a known
linear system, its linearisation against finite differences, the per-step fit it gives from a
single trial, pickling (resume) and training with it."""
import json
import pickle

import numpy as np
import pytest

pytest.importorskip("gpytorch")

from gps_ros.config import parse_config  # noqa: E402
from gps_ros.dynamics import DynamicsFitter, fit_linear_gaussian  # noqa: E402
from gps_ros.dynamics.gp_prior import DynamicsPriorGP  # noqa: E402

from test_priors import _heldout_rms, _linear_system, _trials  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    """A GP prior fitted to 20 trials of a known linear system x' = A x + B u + c + noise."""
    dX, dU, T = 6, 2, 40
    A, B, step = _linear_system(dX, dU)
    X, U = _trials(step, 20, T, dX, dU, 0, noise=1.0)
    p = DynamicsPriorGP(inducing=48, first_steps=800, steps=50, seed=0)
    p.update(X, U)
    return p, A, B, step, X, U


def test_the_posterior_recovers_a_known_linear_system(fitted):
    p, A, B, step, X, U = fitted
    dX = A.shape[0]
    z = np.concatenate([X[:5, 10], U[:5, 10]], axis=1)
    fz, J = p.linearize(z)
    np.testing.assert_allclose(fz, step(z[:, :dX], z[:, dX:]), atol=0.05)
    assert np.max(np.abs(J - np.hstack([A, B]))) < 0.1, np.max(np.abs(J - np.hstack([A, B])))
    # and on held-out states of the same system (not training tuples)
    Xte, Ute = _trials(step, 3, 40, dX, B.shape[1], 5, noise=1.0)
    pred = p.predict(Xte[:, :-1].reshape(-1, dX), Ute[:, :-1].reshape(-1, B.shape[1]))
    assert np.sqrt(np.mean((pred - Xte[:, 1:].reshape(-1, dX)) ** 2)) < 0.05
    assert p.train_rms < 0.05


def test_the_linearisation_is_the_posterior_mean_s_derivative(fitted):
    """linearize's Jacobian (autograd through the GP's predictive mean) against central finite
    differences of predict, and f(z̄) = predict(z̄)."""
    p, A, B, _, X, U = fitted
    dX, dU = A.shape[0], B.shape[1]
    z = np.concatenate([X[:4, 7], U[:4, 7]], axis=1)
    fz, J = p.linearize(z)
    np.testing.assert_allclose(fz, p.predict(z[:, :dX], z[:, dX:]), atol=1e-5)
    eps = 1e-2
    cols = []
    for k in range(dX + dU):
        e = eps * np.eye(dX + dU)[k]
        hi, lo = z + e, z - e
        cols.append((p.predict(hi[:, :dX], hi[:, dX:]) - p.predict(lo[:, :dX], lo[:, dX:])) / (2 * eps))
    np.testing.assert_allclose(J, np.stack(cols, axis=-1), atol=3e-3)


def test_the_niw_prior_has_the_gp_slopes(fitted):
    p, A, B, _, X, U = fitted
    dX, dU = A.shape[0], B.shape[1]
    P = np.concatenate([X[:3, :-1], U[:3, :-1], X[:3, 1:]], axis=2).transpose(1, 0, 2)
    mu0, Phi, m, n0 = p.eval_batch(dX, dU, P)
    D = 2 * dX + dU
    assert mu0.shape == (P.shape[0], D) and Phi.shape == (P.shape[0], D, D)
    np.testing.assert_allclose(Phi, np.swapaxes(Phi, -1, -2), atol=1e-12)
    assert np.linalg.eigvalsh(Phi).min() > -1e-9
    assert np.all(m == p.strength) and np.all(n0 == p.strength)
    # the prior's regression of x' on z is the GP's Jacobian
    S = Phi / p.strength
    dZ = dX + dU
    slope = np.linalg.solve(S[:, :dZ, :dZ], S[:, :dZ, dZ:]).transpose(0, 2, 1)
    _, J = p.linearize(P[:, :, :dZ].mean(axis=1))
    np.testing.assert_allclose(slope, J, atol=1e-6)


def test_a_single_trial_takes_the_gp_slopes():
    """With one trial per condition the data carry no slope information: the per-step fit takes
    the GP's (close to the true [A B]) instead of zeros, and predicts held-out trials better."""
    dX, dU, T = 6, 2, 30
    A, B, step = _linear_system(dX, dU, seed=2)
    X, U = _trials(step, 20, T, dX, dU, 1, noise=1.0)
    p = DynamicsPriorGP(inducing=48, first_steps=800, seed=0)
    p.update(X, U)
    X1, U1 = _trials(step, 1, T, dX, dU, 7, noise=1.0)
    dyn = fit_linear_gaussian(X1, U1, prior=p)
    plain = fit_linear_gaussian(X1, U1)
    err_gp = np.max(np.abs(dyn.Fm[:-1] - np.hstack([A, B])))
    err_plain = np.max(np.abs(plain.Fm[:-1] - np.hstack([A, B])))
    assert err_gp < 0.15 and err_plain > 0.5, (err_gp, err_plain)
    Xte, Ute = _trials(step, 10, T, dX, dU, 8, noise=1.0)
    assert _heldout_rms(dyn, Xte, Ute) < 0.5 * _heldout_rms(plain, Xte, Ute)


def test_it_is_incremental_and_survives_pickling():
    """A run's state pickles the GP, its likelihood, optimiser and minibatch stream: a copy
    refitted on the same new trials gives the same predictions, bit for bit."""
    dX, dU, T = 6, 2, 20
    _, _, step = _linear_system(dX, dU)
    X, U = _trials(step, 6, T, dX, dU, 0)
    p = DynamicsPriorGP(inducing=16, first_steps=40, steps=15, max_samples=8, seed=0)
    p.update(X[:4], U[:4])
    assert p.n_refits == 1 and p.n_trials == 4
    q = pickle.loads(pickle.dumps(p))
    z = np.concatenate([X[0, :5], U[0, :5]], axis=1)
    np.testing.assert_array_equal(p.linearize(z)[1], q.linearize(z)[1])
    p.update(X[4:], U[4:])
    q.update(X[4:], U[4:])
    np.testing.assert_array_equal(p.predict(X[0], U[0]), q.predict(X[0], U[0]))
    with pytest.raises(RuntimeError):
        DynamicsPriorGP().eval_batch(dX, dU, np.zeros((2, 1, 2 * dX + dU)))


def test_the_config_selects_it_and_training_learns_and_resumes(tmp_path):
    """``dynamics.type: gp_prior`` on the CI reach task: the cost falls over 3 iterations, and a
    run stopped after 2 and resumed ends identical to the uninterrupted one."""
    from conftest import small_config_dict

    from gps_ros.train import resume, train

    d = small_config_dict()
    d["dynamics"] = {"type": "gp_prior", "gp": {"inducing": 32, "first_steps": 200, "steps": 50}}
    cfg = parse_config(d, "t")
    fitter = DynamicsFitter.from_config(cfg.dynamics, seed=1)
    assert isinstance(fitter.prior, DynamicsPriorGP) and fitter.prior.inducing == 32
    full = train(cfg, tmp_path / "full", iterations=3, progress=False)
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert np.mean(rows[-1]["final_distance"]) < 0.7 * np.mean(rows[0]["final_distance"])
    part = train(cfg, tmp_path / "part", iterations=2, progress=False)
    resume(part, iterations=3, progress=False)
    rows2 = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["final_distance"] for r in rows2] == [r["final_distance"] for r in rows]


def test_it_leaves_torch_s_global_rng_alone():
    import torch

    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    _, _, step = _linear_system()
    X, U = _trials(step, 2, 10, 6, 2, 0)
    DynamicsPriorGP(inducing=8, first_steps=5, seed=9).update(X, U)
    assert torch.equal(torch.rand(3), expect)
