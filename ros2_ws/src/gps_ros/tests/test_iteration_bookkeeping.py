"""One LQR-FLM iteration's bookkeeping on the toy double integrator (no simulator): which
controllers sample, what the C-step is given (the KL budget ε = kl_step · step_mult · T, the
warm-started η, the costs of the valid trials), what the state keeps for the next step-size
decision, and the metrics it reports, each against the quantities it is made of."""
import numpy as np
import pytest

from gps_ros.algorithm import LQRFLM, sample_seed
from gps_ros.config import AlgorithmConfig

from test_traj_opt import T_TOY, ToyCost, ToyFitter, ToySampler, init_controller, toy_step_costs


class Recorder:
    """A TrajectoryOptimizer that records its arguments around the real one."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def optimize(self, dynamics, costs, prev, epsilon, eta0, samples=None, sample_costs=None):
        self.calls.append(dict(dynamics=dynamics, costs=costs, prev=prev, epsilon=list(epsilon),
                               eta0=list(eta0), samples=samples, sample_costs=sample_costs))
        return self.inner.optimize(dynamics, costs, prev, epsilon, eta0, samples, sample_costs)


class CountingSampler(ToySampler):
    def __init__(self):
        super().__init__()
        self.seen = []

    def sample(self, policy, condition, noise=None, seeds=None, source="controller"):
        self.seen.append((policy, condition, list(seeds), source))
        return super().sample(policy, condition, noise, seeds, source)


def make(M=2, N=3, kl_step=0.4):
    from gps_ros.algorithm import KLConstrainedLQR

    cfg = AlgorithmConfig(samples_per_condition=N, kl_step=kl_step)
    opt = Recorder(KLConstrainedLQR(cfg))
    sampler = CountingSampler()
    algo = LQRFLM(cfg, sampler, ToyFitter(), ToyCost(), [init_controller(var=0.5)] * M, seed=7,
                  distance_fn=lambda X: np.abs(X[:, -1, 0]), optimizer=opt)
    return algo, opt, sampler


def test_an_iteration_samples_each_condition_with_its_controller_and_seeds():
    algo, _, sampler = make()
    first = [st.controller for st in algo.conditions]
    algo.run_iteration()
    assert [(c, src) for _, c, _, src in sampler.seen] == [(0, "controller"), (1, "controller")]
    assert sampler.seen[0][0] is first[0] and sampler.seen[1][0] is first[1]
    assert sampler.seen[1][2] == [sample_seed(7, 0, 1, i) for i in range(3)]
    assert len(set(sampler.seen[0][2] + sampler.seen[1][2])) == 6     # all trial seeds differ
    assert algo.trials == 6 and algo.iteration == 1


def test_the_c_step_gets_the_budget_the_warm_start_and_the_valid_trials_costs():
    algo, opt, _ = make(kl_step=0.4)
    algo.conditions[1].step_mult = 2.5
    algo.conditions[0].eta = 3.0
    before = [st.controller for st in algo.conditions]
    r = algo.run_iteration()
    call = opt.calls[0]
    assert call["epsilon"] == pytest.approx([0.4 * 1.0 * T_TOY, 0.4 * 2.5 * T_TOY])
    assert call["eta0"] == [3.0, 1.0]
    assert call["prev"][0] is before[0] and call["prev"][1] is before[1]
    for m in range(2):
        tr = r.samples[m]
        np.testing.assert_allclose(call["sample_costs"][m], toy_step_costs(tr.X, tr.U))
        assert call["samples"][m].N == 3


def test_the_state_keeps_what_the_next_step_size_decision_needs():
    algo, opt, _ = make()
    before = [st.controller for st in algo.conditions]
    r = algo.run_iteration()
    for m, st in enumerate(algo.conditions):
        assert st.prev_controller is before[m]
        assert st.prev_reference is before[m]                 # LQR-FLM: KL to the controller
        assert st.prev_dynamics is r.dynamics[m] and st.prev_cost is opt.calls[0]["costs"][m]
        assert st.controller is r.lqr[m].controller
        assert st.eta == r.lqr[m].eta and st.last_kl == r.lqr[m].kl


def test_the_metrics_are_made_of_the_iterations_quantities():
    algo, _, _ = make()
    algo.run_iteration()
    r = algo.run_iteration()
    m = r.metrics
    per_cond = [toy_step_costs(tr.X, tr.U).sum(1).mean() for tr in r.samples]
    assert m["iteration"] == 2 and m["trials"] == 12 and m["discarded"] == 0
    assert m["cost_per_condition"] == pytest.approx(per_cond)
    assert m["cost"] == pytest.approx(np.mean(per_cond))
    assert m["final_distance"] == pytest.approx([np.mean(np.abs(tr.X[:, -1, 0])) for tr in r.samples])
    assert m["kl"] == [res.kl for res in r.lqr] and m["eta"] == [res.eta for res in r.lqr]
    assert m["epsilon"] == [res.epsilon for res in r.lqr]
    assert m["step_mult"] == [st.step_mult for st in algo.conditions]
    assert m["lqr_converged"] == [res.converged for res in r.lqr]
    assert set(m["time"]) == {"sample", "dynamics", "cost", "linearize", "step_size", "lqr", "total"}
    assert m["time"]["total"] == pytest.approx(sum(v for k, v in m["time"].items() if k != "total"),
                                               abs=1e-3)
    assert "rejected_step" not in m and "residual_ratio" not in m and "pi2_weight_kl" not in m
