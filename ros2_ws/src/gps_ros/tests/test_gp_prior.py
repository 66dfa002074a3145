"""The Gaussian-process dynamics prior (gps_ros.dynamics.gp_prior): its posterior on a known
linear system, its linearisation against finite differences, its NIW prior and training with it
(what it shares with the network prior -- single-trial slopes, pickling, torch's global RNG --
is tested for both in tests/test_priors.py)."""
import json

import numpy as np
import pytest

pytest.importorskip("gpytorch")

from gps_ros.config import parse_config  # noqa: E402
from gps_ros.dynamics import DynamicsFitter  # noqa: E402
from gps_ros.dynamics.gp_prior import DynamicsPriorGP  # noqa: E402

from test_priors import _linear_system, _trials  # noqa: E402


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
