"""The robot's model as the dynamics prior (dynamics.type: model_prior): the model step against
finite differences and the simulator on every shipped robot, the NIW mapping through the model's
linearisation, the model's slopes where the trials never went, pickling and resume, and the CI reach
against the GMM prior (also with a 30 % inertia error in the model's URDF)."""
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from conftest import small_config_dict
from gps_ros.config import ConfigError, load_config, parse_config
from gps_ros.dynamics import DynamicsFitter, DynamicsPriorGMM, ModelPrior, ModelStep, fit_linear_gaussian
from gps_ros.dynamics.model_prior import niw_through_model, payload_urdf, scaled_inertia_urdf

CONFIGS = Path(__file__).resolve().parents[1] / "config"


def _robot_config(robot):
    from gps_ros.robot.description import package_share

    if robot in ("ur5", "so101") and package_share("example-robot-data") is None:
        pytest.skip("needs the example-robot-data wheel (pip install 'gps_ros[robots]')")
    return load_config(CONFIGS / f"{robot}_reach.yaml")


# ----------------------------------------------------------------------------- a linear "model"
class _LinearStep:
    """f(z) = A z + c (exact linearisation: J = A everywhere)."""

    def __init__(self, A, c):
        self.A, self.c = A, c

    def __call__(self, X, U):
        return np.concatenate([X, U], axis=-1) @ self.A.T + self.c

    def linearize(self, X, U):
        return self(X, U), np.broadcast_to(self.A, (X.shape[0],) + self.A.shape).copy()


def _linear(dX=5, dU=2, seed=0):
    rng = np.random.default_rng(seed)
    A = np.hstack([np.eye(dX) + 0.2 * rng.standard_normal((dX, dX)) / np.sqrt(dX),
                   0.5 * rng.standard_normal((dX, dU))])
    return A, 0.1 * rng.standard_normal(dX)


def test_niw_mapping_is_exact_for_a_linear_model():
    """[z; x'] = [z; r + f(z)] with f linear: the empirical mean and covariance of the residual
    tuples mapped through T = [[I, 0], [J, I]] (at any linearisation point) are exactly those of
    the transition tuples."""
    dX, dU = 5, 2
    A, c = _linear(dX, dU)
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((200, dX + dU)) * rng.uniform(0.1, 3.0, dX + dU)
    R = 0.3 * np.tanh(Z[:, :dX]) + 0.05 * rng.standard_normal((200, dX))   # correlated with z
    Xn = Z @ A.T + c + R
    stats = lambda P: (P.mean(axis=0), np.cov(P.T, bias=True))
    mu_r, S_r = stats(np.hstack([Z, R]))
    mu, S = stats(np.hstack([Z, Xn]))
    for zbar in (Z.mean(axis=0), rng.standard_normal(dX + dU)):
        fbar = zbar @ A.T + c
        mu0, Phi = niw_through_model(mu_r[None], 4.0 * S_r[None], fbar[None], A[None], zbar[None])
        np.testing.assert_allclose(mu0[0], mu, atol=1e-12)
        np.testing.assert_allclose(Phi[0], 4.0 * S, rtol=1e-12, atol=1e-12)


def _trials(A, c, n, T, dX, dU, seed, explore):
    """Trials of x' = A [x; u] + c + small noise, with u exploring only the columns ``explore``."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, dX))
    U = np.zeros((n, T, dU))
    U[:, :, explore] = rng.standard_normal((n, T, len(explore)))
    X[:, 0] = 0.5 * rng.standard_normal((n, dX))
    for t in range(T - 1):
        X[:, t + 1] = np.concatenate([X[:, t], U[:, t]], axis=1) @ A.T + c \
            + 1e-3 * rng.standard_normal((n, dX))
    return X, U


def test_model_fills_the_directions_the_trials_never_explored():
    """The prior is fitted on trials whose second action never moved; one trial of the condition:
    with the model prior the per-step fit has the model's slopes in every column (the unexplored
    one included), the GMM prior alone has nothing there."""
    dX, dU, T = 5, 2, 30
    A, c = _linear(dX, dU, seed=3)
    X, U = _trials(A, c, 8, T, dX, dU, 0, explore=[0])
    gmm_kwargs = dict(max_clusters=4, min_samples_per_cluster=20, max_samples=20, seed=0)
    model = ModelPrior(_LinearStep(A, c), "gmm", gmm_kwargs)
    gmm = DynamicsPriorGMM(**gmm_kwargs)
    model.update(X, U)
    gmm.update(X, U)
    X1, U1 = _trials(A, c, 1, T, dX, dU, 7, explore=[0])
    fit_m = fit_linear_gaussian(X1, U1, prior=model)
    fit_g = fit_linear_gaussian(X1, U1, prior=gmm)
    err_m = np.abs(fit_m.Fm[:-1] - A).max(axis=(0, 1))
    assert err_m[:dX + 1].max() < 2e-3, err_m
    # the unexplored column: the model's, shrunk by the fit's regularisation against the floor
    # (1e-6 against zz_min 1e-4 / 2: 2 %)
    assert err_m[dX + 1] < 0.03 * np.abs(A[:, dX + 1]).max(), err_m
    assert np.abs(fit_g.Fm[:-1, :, dX + 1]).max() < 1e-2           # GMM: no slope on u2
    nofloor = ModelPrior(_LinearStep(A, c), "gmm", gmm_kwargs, zz_floor=0.0, zz_min=0.0)
    nofloor.update(X, U)
    fit_0 = fit_linear_gaussian(X1, U1, prior=nofloor)              # without the floor: lost too
    assert np.abs(fit_0.Fm[:-1, :, dX + 1]).max() < 0.1 * np.abs(A[:, dX + 1]).max()
    # the predicted next state of the fitted model is the model's (exact up to the noise)
    pred = np.einsum("tij,tj->ti", fit_m.Fm[:-1], np.hstack([X1[0, :-1], U1[0, :-1]])) + fit_m.fv[:-1]
    np.testing.assert_allclose(pred, X1[0, 1:], atol=1e-2)


def test_model_prior_with_a_network_residual():
    torch = pytest.importorskip("torch")  # noqa: F841
    dX, dU, T = 5, 2, 30
    A, c = _linear(dX, dU, seed=4)
    X, U = _trials(A, c, 6, T, dX, dU, 0, explore=[0, 1])
    p = ModelPrior(_LinearStep(A, c), "nn", dict(hidden=[16], first_steps=100, steps=10, seed=0))
    p.update(X, U)
    X1, U1 = _trials(A, c, 1, T, dX, dU, 5, explore=[0, 1])
    fit = fit_linear_gaussian(X1, U1, prior=p)
    assert np.abs(fit.Fm[:-1] - A).max() < 0.05
    q = pickle.loads(pickle.dumps(p))
    P = np.concatenate([X1[:, :-1], U1[:, :-1], X1[:, 1:]], axis=2).transpose(1, 0, 2)
    for a, b in zip(p.eval_batch(dX, dU, P), q.eval_batch(dX, dU, P)):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- the robot's step
def _sim_tuples(cfg, steps):
    """(X, U, X') of ``steps`` simulator steps per condition under the initial controllers."""
    from gps_ros.sim.arm import ArmSim
    from gps_ros.task import build_initial_controllers

    sim = ArmSim(cfg.agent)
    try:
        ctrls = build_initial_controllers(cfg, sim.task)
        rng = np.random.default_rng(0)
        out = []
        for m, c in enumerate(ctrls):
            x = sim.reset(m)
            for t in range(steps):
                u = c.K[t] @ x + c.k[t] + np.linalg.cholesky(c.pol_covar[t]) @ rng.standard_normal(c.dU)
                xn = sim.step(u)
                out.append((x, u, xn))
                x = xn
        return [np.array(a) for a in zip(*out)], sim.task
    finally:
        sim.close()


#: one-step error of the model relative to the state change, upper bounds per command interface
#: (measured: effort ~4e-6 Panda, ~3e-7 iiwa; velocity ~1e-3 UR5; position ~6e-3 SO-101)
SIM_TOLERANCE = {"effort": 1e-4, "velocity": 5e-3, "position": 2e-2}


@pytest.mark.parametrize("robot", ["panda", "iiwa", "ur5", "so101"])
def test_model_step_matches_the_simulator_and_its_jacobian(robot):
    cfg = _robot_config(robot)
    (X, U, Xn), task = _sim_tuples(cfg, 12)
    step = ModelStep(cfg.agent, task=task)
    F = step(X, U)
    rel = np.linalg.norm(Xn - F) / np.linalg.norm(Xn - X)
    assert rel < SIM_TOLERANCE[task.command], (robot, rel)
    # the Jacobian against central differences of f
    idx = np.arange(3, X.shape[0], 17)[:3]
    f0, J = step.linearize(X[idx], U[idx])
    np.testing.assert_allclose(f0, F[idx], rtol=1e-12, atol=1e-12)
    Z = np.hstack([X[idx], U[idx]])
    dX = X.shape[1]
    Jfd = np.empty_like(J)
    for k in range(Z.shape[1]):
        e = 1e-6 * max(1.0, np.abs(Z[:, k]).max())
        Zp, Zm = Z.copy(), Z.copy()
        Zp[:, k] += e
        Zm[:, k] -= e
        Jfd[:, :, k] = (step(Zp[:, :dX], Zp[:, dX:]) - step(Zm[:, :dX], Zm[:, dX:])) / (2 * e)
    err = np.linalg.norm(J - Jfd) / np.linalg.norm(J)
    assert err < 1e-6, (robot, err)


def test_model_step_pickles_without_pinocchio_and_rebuilds(small_cfg):
    step = ModelStep(small_cfg.agent)
    rng = np.random.default_rng(0)
    from gps_ros.task import TaskModel

    task = TaskModel(small_cfg.agent)
    X = np.stack([task.state(task.start_pose(0) + 0.1 * rng.standard_normal(task.n),
                             rng.standard_normal(task.n), 0) for _ in range(3)])
    U = rng.standard_normal((3, task.dU))
    f, J = step.linearize(X, U)
    blob = pickle.dumps(step)
    assert b"pinocchio" not in blob
    f2, J2 = pickle.loads(blob).linearize(X, U)
    np.testing.assert_array_equal(f, f2)
    np.testing.assert_array_equal(J, J2)
    step._fd_joints = True          # the fallback of continuous joints: central differences
    f3, J3 = step.linearize(X, U)
    np.testing.assert_allclose(f3, f, rtol=1e-12, atol=1e-12)
    assert np.linalg.norm(J3 - J) < 1e-7 * np.linalg.norm(J)


def test_wrong_urdfs_change_the_model():
    cfg = parse_config(small_config_dict(), "t")
    from gps_ros.task import TaskModel

    task = TaskModel(cfg.agent)
    q = task.start_pose(0)
    M = task.mass_matrix(q)
    heavy = TaskModel(cfg.agent, urdf=scaled_inertia_urdf(task.description.urdf, 1.3))
    np.testing.assert_allclose(heavy.mass_matrix(q), 1.3 * M, rtol=1e-9, atol=1e-12)
    loaded = TaskModel(cfg.agent, urdf=payload_urdf(task.description.urdf,
                                                    task.description.ee_link, 1.0))
    assert np.all(np.diag(loaded.mass_matrix(q))[:6] > np.diag(M)[:6])


# ----------------------------------------------------------------------------- config
def test_config_selects_the_model_prior():
    from gps_ros.dynamics.model_prior import ResidualPriorGMM
    from gps_ros.train import build_fitter

    cfg = parse_config(small_config_dict(dynamics={"type": "model_prior",
                                                   "prior": {"max_samples": 6, "cov_prior": 3.0}}), "t")
    f = build_fitter(cfg)
    assert isinstance(f.prior, ModelPrior) and isinstance(f.prior.learned, ResidualPriorGMM)
    assert f.prior.learned.max_samples == 6 and f.prior.learned.gmm.cov_prior == 3.0
    with pytest.raises(ValueError, match="needs the robot model"):
        DynamicsFitter.from_config(cfg.dynamics)
    for bad, msg in (({"type": "model_prior", "model_residual": "svm"}, "model_residual"),
                     ({"type": "gmm_prior", "model_urdf": "/x.urdf"}, "model_urdf")):
        with pytest.raises(ConfigError, match=msg) as err:
            parse_config(small_config_dict(dynamics=bad), "t")
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- in training
def _ci(dynamics=None, iterations=4, T=None):
    d = small_config_dict()
    d["iterations"] = iterations
    if T:
        d["agent"]["T"] = T
    if dynamics:
        d["dynamics"] = {**d["dynamics"], **dynamics}
    return parse_config(d, "t")


def _rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_with_the_model_prior_pickles_and_resumes_exactly(tmp_path):
    from gps_ros.train import resume, train

    cfg = _ci({"type": "model_prior"}, T=15)
    full = train(cfg, tmp_path / "full", iterations=3, progress=False)
    part = train(cfg, tmp_path / "part", iterations=2, progress=False)
    resume(part, iterations=3, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert strip(_rows(part)) == strip(_rows(full))


def _first_success(run, threshold=0.02):
    return next((r["iteration"] for r in _rows(run) if max(r["final_distance"]) < threshold), 99)


def test_model_prior_reaches_no_later_than_the_gmm_even_with_a_wrong_urdf(tmp_path):
    """The CI reach: every target below 2 cm with the model prior no later than with the GMM prior,
    and with a model 30 % too heavy (mass and inertia of every link) no later either."""
    from gps_ros.task import robot_description
    from gps_ros.train import train

    gmm = _first_success(train(_ci(), tmp_path / "gmm", progress=False))
    model = _first_success(train(_ci({"type": "model_prior"}), tmp_path / "model", progress=False))
    urdf = tmp_path / "heavy.urdf"
    urdf.write_text(scaled_inertia_urdf(robot_description(_ci().agent).urdf, 1.3))
    wrong = _first_success(train(_ci({"type": "model_prior", "model_urdf": str(urdf)}),
                                 tmp_path / "wrong", progress=False))
    assert gmm < 99
    assert model <= gmm and wrong <= gmm, (gmm, model, wrong)
