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


# --- the rules around the C-step ----------------------------------------------------------------
def test_the_in_process_lqr_passes_the_configs_search_settings(monkeypatch):
    import gps_ros.algorithm as alg

    seen = {}
    monkeypatch.setattr(alg, "kl_constrained_lqr",
                        lambda *a, **kw: seen.update(args=a, kw=kw) or ["result"])
    cfg = AlgorithmConfig(kl_tolerance=0.07, max_eta_iterations=13, min_eta=1e-5, max_eta=1e9)
    assert alg.KLConstrainedLQR(cfg).optimize("d", "c", "p", "e", "h") == ["result"]
    assert seen["args"] == ("d", "c", "p", "e", "h")
    assert seen["kw"] == dict(tolerance=0.07, max_iterations=13, min_eta=1e-5, max_eta=1e9)


@pytest.mark.parametrize("ratio, first, expected", [
    (0.5, False, 0.4 * 0.5),     # above pilqr_res_ratio_dec (0.2): halve
    (0.01, False, 0.4 * 2.0),    # below pilqr_res_ratio_inc (0.05): double
    (0.1, False, 0.4),           # between: keep
    (0.2, False, 0.4),           # at dec: keep
    (0.05, False, 0.4),          # at inc: keep
    (0.5, True, 0.4),            # no previous step to judge
])
def test_pilqr_step_rule_halves_doubles_or_keeps(monkeypatch, ratio, first, expected):
    import gps_ros.algorithm as alg
    import gps_ros.control.pilqr as pilqr
    from gps_ros.algorithm import ConditionState

    monkeypatch.setattr(pilqr, "residual_ratio", lambda *a: ratio)
    algo = LQRFLM.__new__(LQRFLM)
    algo.cfg = AlgorithmConfig(traj_opt="pilqr", min_step_mult=0.01, max_step_mult=10.0,
                               samples_per_condition=2)
    st = ConditionState(init_controller(), step_mult=0.4,
                        prev_controller=None if first else init_controller())
    tr = alg.Trajectories(np.zeros((2, T_TOY, 2)), np.zeros((2, T_TOY, 1)), [None, None])
    assert algo._adapt_step_residual(st, None, None, tr, np.zeros((2, T_TOY))) == ratio
    assert st.step_mult == pytest.approx(expected)


def test_pilqr_step_rule_stays_within_the_multiplier_bounds(monkeypatch):
    import gps_ros.algorithm as alg
    import gps_ros.control.pilqr as pilqr
    from gps_ros.algorithm import ConditionState

    algo = LQRFLM.__new__(LQRFLM)
    algo.cfg = AlgorithmConfig(traj_opt="pilqr", min_step_mult=0.3, max_step_mult=0.6,
                               samples_per_condition=2)
    tr = alg.Trajectories(np.zeros((2, T_TOY, 2)), np.zeros((2, T_TOY, 1)), [None, None])
    for ratio, expected in ((0.9, 0.3), (0.0, 0.6)):
        monkeypatch.setattr(pilqr, "residual_ratio", lambda *a, r=ratio: r)
        st = ConditionState(init_controller(), step_mult=0.5, prev_controller=init_controller())
        algo._adapt_step_residual(st, None, None, tr, np.zeros((2, T_TOY)))
        assert st.step_mult == expected


class DiscardingSampler(ToySampler):
    """Marks the first ``bad`` trials it runs as discarded (blown up)."""

    def __init__(self, bad):
        super().__init__()
        self.bad, self.calls = bad, []

    def sample(self, policy, condition, noise=None, seeds=None, source="controller"):
        tr = super().sample(policy, condition, noise, seeds, source)
        self.calls.append(tr.N)
        for meta in tr.meta:
            if self.bad > 0:
                meta.discarded, meta.reason = True, "joint speed 23 rad/s"
                self.bad -= 1
        return tr


def _algo_with(sampler, N=3):
    cfg = AlgorithmConfig(samples_per_condition=N)
    return LQRFLM(cfg, sampler, ToyFitter(), ToyCost(), [init_controller(var=0.5)], seed=1,
                  distance_fn=lambda X: np.abs(X[:, -1, 0]))


def test_discarded_trials_are_replaced_until_n_are_valid():
    sampler = DiscardingSampler(bad=4)                # 3 of the first 3, then 1 of the next 3
    algo = _algo_with(sampler)
    tr = algo._sample_condition(0)
    assert sampler.calls == [3, 3, 1] and tr.N == 7 and int(tr.valid_mask.sum()) == 3
    assert algo.trials == 7


def test_with_two_valid_trials_after_3n_attempts_the_loop_goes_on(caplog):
    import logging

    sampler = DiscardingSampler(bad=7)                # 9 attempts: 2 valid
    algo = _algo_with(sampler)
    with caplog.at_level(logging.WARNING, logger="gps_ros.algorithm"):
        tr = algo._sample_condition(0)
    assert sum(sampler.calls) == 9 and int(tr.valid_mask.sum()) == 2
    assert "condition 0: only 2 of 3 trials valid; continuing" in caplog.messages


def test_with_fewer_than_two_valid_trials_after_3n_attempts_the_loop_stops():
    sampler = DiscardingSampler(bad=8)                # 9 attempts: 1 valid
    algo = _algo_with(sampler)
    with pytest.raises(RuntimeError, match=r"^condition 0: 8 of 9 trials were discarded "
                                           r"\(joint speed 23 rad/s\); check the robot and the "
                                           r"controller$"):
        algo._sample_condition(0)
