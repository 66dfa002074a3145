"""The model-based learners (MBPO, Dyna, BPTT): their ensemble against a known linear system, SAC's
squashed-Gaussian density against torch.distributions, the Markov reward against the GPS cost, the
BPTT gradient against finite differences, a short run that improves the return, and resumes that
continue exactly."""
import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gps_ros.algorithm import sample_seed  # noqa: E402
from gps_ros.config import ModelBasedConfig, parse_config  # noqa: E402
from gps_ros.cost import ActionCost, EEPointsCost, WeightedSumCost  # noqa: E402
from gps_ros.mbrl.ensemble import GaussianEnsemble  # noqa: E402
from gps_ros.mbrl.learner import (ModelBasedLearner, StateBox, bptt_objective,  # noqa: E402
                                  rollout_length)
from gps_ros.mbrl.reward import MarkovReward  # noqa: E402
from gps_ros.mbrl.sac import SAC, export_actor  # noqa: E402
from gps_ros.sample import TrialMeta, Trajectories  # noqa: E402


# ----------------------------------------------------------------------------- a known system
class PointMass:
    """A Sampler over a 2-D double integrator: x = [p (2), v (2)], u = acceleration, dt 0.1, the
    goal the origin; conditions start at different points.  State noise std ``sigma``."""

    dt = 0.1

    def __init__(self, T=25, starts=((0.8, -0.6), (-0.7, 0.5)), sigma=0.0):
        self.T, self.dX, self.dU = T, 4, 2
        self.starts = np.array(starts, float)
        self.sigma = sigma
        dt = self.dt
        self.A = np.block([[np.eye(2), dt * np.eye(2)], [np.zeros((2, 2)), np.eye(2)]])
        self.B = np.vstack([0.5 * dt * dt * np.eye(2), dt * np.eye(2)])

    def sample(self, policy, condition, noise=None, seeds=None, source="controller"):
        n = noise.shape[0]
        X, U = np.zeros((n, self.T, 4)), np.zeros((n, self.T, 2))
        for i in range(n):
            rng = np.random.default_rng(None if seeds is None else seeds[i])
            x = np.r_[self.starts[condition], 0.0, 0.0]
            for t in range(self.T):
                u = np.asarray(policy.act(t, x, noise[i, t]), float)
                X[i, t], U[i, t] = x, u
                x = self.A @ x + self.B @ u + self.sigma * rng.standard_normal(4)
        return Trajectories(X, U, [TrialMeta(condition=condition, source=source) for _ in range(n)])

    def cost(self):
        return WeightedSumCost([ActionCost(np.full(2, 1.0)), EEPointsCost([0, 1], wp=None, l2=10.0,
                                                                         l1=1.0, alpha=1e-4)],
                               [1e-2, 1.0])


def _learner(kind="mbpo", seed=0, sampler=None, **cfg):
    sys = sampler or PointMass()
    base = dict(members=3, elites=2, model_hidden=[32, 32], model_max_epochs=40, hidden=[64, 64],
                batch_size=64, utd=5.0, rollout_batch=200, rollout_every=100,
                rollout_length=[1, 3, 1, 3], bptt_horizon=3, evaluate=True, lr=1e-3)
    base.update(cfg)
    box = StateBox(np.array([-3, -3, -5, -5.0]), np.array([3, 3, 5, 5.0]))
    return ModelBasedLearner(ModelBasedConfig(**base), kind, sys, sys.cost(), len(sys.starts), sys.T,
                             4, 2, (-np.ones(2), np.ones(2)), box, seed,
                             distance_fn=lambda X: np.linalg.norm(X[:, -1, :2], axis=-1))


# ----------------------------------------------------------------------------- the ensemble
def test_ensemble_recovers_a_linear_system_and_its_noise():
    rng = np.random.default_rng(0)
    dX, dU, n, sigma = 4, 2, 3000, 0.2
    A = np.eye(dX) + 0.2 * rng.standard_normal((dX, dX)) / np.sqrt(dX)
    B = rng.standard_normal((dX, dU))
    X, U = rng.standard_normal((n, dX)), rng.standard_normal((n, dU))
    Xn = X @ A.T + U @ B.T + sigma * rng.standard_normal((n, dX))
    model = GaussianEnsemble(dX, dU, members=5, elites=3, hidden=[64, 64], max_epochs=60, seed=0)
    report = model.fit(X, U, Xn)
    assert sorted(report.elites) == sorted(np.argsort(report.holdout_mse)[:3].tolist())
    Xt, Ut = rng.standard_normal((500, dX)), rng.standard_normal((500, dU))
    truth = Xt @ A.T + Ut @ B.T
    err = model.mean_prediction(Xt, Ut) - truth
    assert np.sqrt(np.mean(err ** 2)) < 0.3 * sigma + 0.01          # the mean: the true map
    with torch.no_grad():
        _, var = model.predict(torch.as_tensor(Xt, dtype=torch.float32),
                               torch.as_tensor(Ut, dtype=torch.float32))
    std = np.sqrt(var[model.elites].double().numpy().mean(axis=(0, 1)))
    np.testing.assert_allclose(std, sigma, rtol=0.2)                 # the aleatoric noise
    # a sampled step: its spread over many draws is the predicted noise
    x = torch.as_tensor(np.repeat(Xt[:1], 4000, 0), dtype=torch.float32)
    u = torch.as_tensor(np.repeat(Ut[:1], 4000, 0), dtype=torch.float32)
    draws = model.step(x, u, eps=torch.randn(4000, dX)).detach().double().numpy()
    np.testing.assert_allclose(draws.std(axis=0), sigma, rtol=0.25)
    np.testing.assert_allclose(draws.mean(axis=0), truth[0], atol=0.1)


def test_ensemble_pickles_and_predicts_the_same():
    rng = np.random.default_rng(1)
    X, U = rng.standard_normal((200, 3)), rng.standard_normal((200, 1))
    model = GaussianEnsemble(3, 1, members=2, elites=1, hidden=[16], max_epochs=3, seed=2)
    model.fit(X, U, X + 0.1 * U)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.mean_prediction(X, U), model.mean_prediction(X, U))
    assert back.elites == model.elites


# ----------------------------------------------------------------------------- SAC
def test_squashed_gaussian_log_density_matches_torch_distributions():
    from torch.distributions import Normal, TransformedDistribution
    from torch.distributions.transforms import AffineTransform, TanhTransform

    sac = SAC(5, 3, np.array([-2.0, 0.0, -1.0]), np.array([2.0, 1.0, 3.0]), hidden=[16], seed=0)
    x = torch.randn(64, 5)
    eps = torch.randn(64, 3)
    with torch.no_grad():
        u, logp = sac.actor(x, eps)
        out = sac.actor.net((x - sac.actor.obs_mean) / sac.actor.obs_std)
        mu, log_std = out[:, :3], out[:, 3:].clamp(-5, 2)
        dist = TransformedDistribution(Normal(mu, log_std.exp()), [
            TanhTransform(), AffineTransform(sac.actor.u_center, sac.actor.u_scale)])
        ref = dist.log_prob(torch.clamp(u, -1e9, 1e9)).sum(-1)
    assert torch.all(u > torch.tensor([-2.0, 0.0, -1.0])) and torch.all(u < torch.tensor([2.0, 1.0, 3.0]))
    np.testing.assert_allclose(logp.numpy(), ref.numpy(), rtol=1e-3, atol=1e-3)


def test_exported_actor_acts_as_the_learner_does(tmp_path):
    from gps_ros.policy.export import load_torchscript

    sac = SAC(6, 2, -np.ones(2), np.ones(2), hidden=[32], seed=3)
    sac.set_obs_stats(np.arange(6.0), np.full(6, 2.0))
    path = export_actor(sac.actor, tmp_path / "actor.pt", state_indices=range(6))
    module, config = load_torchscript(path)
    assert config["noise_input"] and config["state_indices"] == list(range(6))
    x, eps = np.random.default_rng(0).standard_normal((2, 6)), np.array([0.3, -1.2])
    with torch.no_grad():
        u = module(torch.zeros(1, 1, 1, 3, dtype=torch.uint8),
                   torch.as_tensor(x[:1], dtype=torch.float32),
                   torch.as_tensor(eps[None], dtype=torch.float32))[0].double().numpy()
    np.testing.assert_allclose(u, sac.act(x[0], eps), rtol=1e-6)


# ----------------------------------------------------------------------------- the reward
def test_markov_reward_is_the_gps_cost_without_its_time_ramp():
    rng = np.random.default_rng(0)
    C = rng.standard_normal((2, 4))
    cost = WeightedSumCost([ActionCost([1.0, 3.0], reference=C),
                            EEPointsCost([0, 1], wp=[1.0, 0.5], l2=10.0, l1=1.0, alpha=1e-4,
                                         ramp="quadratic")], [1e-2, 2.0])
    flat = WeightedSumCost([ActionCost([1.0, 3.0], reference=C),
                            EEPointsCost([0, 1], wp=[1.0, 0.5], l2=10.0, l1=1.0, alpha=1e-4)],
                           [1e-2, 2.0])
    X, U, Xn = rng.standard_normal((50, 4)), rng.standard_normal((50, 2)), rng.standard_normal((50, 4))
    r = MarkovReward(cost).numpy(X, U, Xn)
    a = flat.costs[0].eval(X[:, None], U[:, None]).l[:, 0]
    s = flat.costs[1].eval(Xn[:, None], U[:, None]).l[:, 0]
    np.testing.assert_allclose(r, -(1e-2 * a + 2.0 * s), rtol=1e-6)


# ----------------------------------------------------------------------------- BPTT
def test_bptt_gradient_matches_finite_differences():
    lr = _learner("bptt", model_hidden=[16], hidden=[16])
    rng = np.random.default_rng(0)
    X, U = rng.standard_normal((300, 4)), rng.uniform(-1, 1, (300, 2))
    lr.model.fit(X, U, X @ lr.sampler.A.T + U @ lr.sampler.B.T)
    torch.set_default_dtype(torch.float64)        # finite differences need double precision
    try:
        lr.model.net.double()
        lr.model.stats = tuple(s.double() for s in lr.model.stats)
        for net in (lr.agent.actor, lr.agent.critic):
            net.double()
        x0 = torch.as_tensor(rng.standard_normal((8, 4)))
        alpha = torch.tensor(0.05)
        params = list(lr.agent.actor.parameters())

        def J():
            obj = bptt_objective(lr.agent, lr.model, lr.reward, lr.box, x0, 4,
                                 torch.Generator().manual_seed(5), 0.95)
            return obj(lr.agent, alpha)[0]

        loss = J()
        grads = torch.autograd.grad(loss, params)
        v = [torch.randn_like(p) for p in params]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, v))
        h = 1e-6
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(h * d)
            up = float(J())
            for p, d in zip(params, v):
                p.sub_(2 * h * d)
            down = float(J())
            for p, d in zip(params, v):
                p.add_(h * d)
        assert analytic != 0.0
        np.testing.assert_allclose((up - down) / (2 * h), analytic, rtol=1e-5)
    finally:
        torch.set_default_dtype(torch.float32)


# ----------------------------------------------------------------------------- the loop
def test_rollout_length_schedule():
    assert [rollout_length([2, 6, 1, 5], i) for i in range(1, 9)] == [1, 1, 2, 3, 4, 5, 5, 5]
    assert rollout_length([3, 3, 1, 4], 3) == 1 and rollout_length([3, 3, 1, 4], 4) == 4


@pytest.mark.parametrize("kind", ["mbpo", "dyna", "bptt"])
def test_a_short_run_improves_the_return(kind):
    """Six iterations (12 trials of 25 steps) on the point mass: the deterministic policy's final
    distance falls below 60 % of the first one's, and the trials' return improves; trials are
    counted per condition as GPS's are.  (Seeds 0 and 1, all three learners: distance 0.17-0.49x
    the first; ~20 s each, BPTT ~45 s.)"""
    lr = _learner(kind, seed=1, sampler=PointMass(starts=((0.5, -0.4), (-0.4, 0.5))), utd=10.0)
    first = lr.run_iteration().metrics
    for _ in range(5):
        last = lr.run_iteration().metrics
    assert last["trials"] == 12 and last["iteration"] == 6 and last["eval_trials"] == 12
    assert np.mean(last["eval_final_distance"]) < 0.6 * np.mean(first["eval_final_distance"])
    assert last["return"] > first["return"]
    assert last["rollout_length"] == (1 if kind == "dyna" else 3)


def test_resumed_learner_continues_exactly():
    """A learner pickled after iteration 2 and restored into a fresh one gives iteration 3 bit for
    bit as the uninterrupted run (every draw is seeded by run seed and iteration)."""
    a = _learner("mbpo", seed=4)
    for _ in range(2):
        a.run_iteration()
    saved = pickle.loads(pickle.dumps(a.state()))
    ref = a.run_iteration().metrics
    b = _learner("mbpo", seed=4)
    b.restore(saved)
    again = b.run_iteration().metrics
    ref.pop("time"), again.pop("time")
    assert again == ref


def test_restore_refuses_another_learner():
    a = _learner("mbpo")
    with pytest.raises(ValueError, match="mbpo's, the config asks for dyna"):
        _learner("dyna").restore(a.state())
    with pytest.raises(ValueError, match="not a model-based learner"):
        a.restore({"iteration": 1, "trials": 4, "conditions": [], "fitter": None})


def test_noise_drives_the_policy_trials_deterministically():
    lr = _learner("mbpo", seed=0)
    seeds = [sample_seed(0, 0, 0, 0)]
    noise = np.random.default_rng(seeds[0]).standard_normal((1, 25, 2))
    t1 = lr.sampler.sample(lr.actor(), 0, noise, seeds)
    t2 = lr.sampler.sample(copy.deepcopy(lr).actor(), 0, noise, seeds)
    np.testing.assert_array_equal(t1.U, t2.U)
    assert np.all(np.abs(t1.U) < 1.0)


def test_config_types_and_checks():
    base = {"agent": {"robot": {"urdf": "x.urdf", "base_link": "a", "ee_link": "b", "joints": ["j"]},
                      "start_joint_positions": [0.0], "conditions": [{"target": [0.5, 0, 0.3]}]}}
    for kind in ("mbpo", "dyna", "bptt"):
        cfg = parse_config({**base, "algorithm": {"type": kind}})
        assert cfg.algorithm.type == kind and cfg.model_based.members == 7
    with pytest.raises(Exception, match="elites"):
        parse_config({**base, "model_based": {"members": 3, "elites": 4}})
    with pytest.raises(Exception, match="rollout_length"):
        parse_config({**base, "model_based": {"rollout_length": [5, 2, 1, 3]}})
