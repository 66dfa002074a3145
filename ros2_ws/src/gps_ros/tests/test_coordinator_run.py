"""The coordinator_node's training run without ROS (gps_ros.ros.coordinator.run_training): over
proxy stages with in-process transports it trains, resumes where it stopped, fails in one line
with the resume command, and waits for its samplers as the node does."""
import logging
import threading

import pytest

from gps_ros.agents import SimAgent
from gps_ros.algorithm import KLConstrainedLQR
from gps_ros.ros import convert, proxies
from gps_ros.ros.convert import PlainTypes as P
from gps_ros.ros.coordinator import (build_ros_algorithm, iteration_line, reattach,
                                     required_samplers, run_training, samplers_missing_error,
                                     wait_for_samplers)
from gps_ros.ros.trial import actor_from_goal, goal_noise
from gps_ros.train import build_fitter


class Log:
    """The three methods the coordinator logs with, kept per severity."""

    def __init__(self):
        self.lines = {"info": [], "warning": [], "error": []}

    def __getattr__(self, level):
        if level not in ("info", "warning", "error"):
            raise AttributeError(level)
        return self.lines[level].append


@pytest.fixture
def stages(small_cfg):
    """The transports of one sampler, the dynamics and the trajectory optimisation nodes, in
    process (the nodes' handlers on plain messages)."""
    agent = SimAgent(small_cfg.agent)
    fitter, lqr, st = build_fitter(small_cfg), KLConstrainedLQR(small_cfg.algorithm), \
        proxies.plain_service_types()
    lock = threading.Lock()
    calls = {"trials": 0, "fit": 0}

    def run_trial(goal):
        actor, source, T, dU = actor_from_goal(goal)
        with lock:
            calls["trials"] += 1
            tr = agent.sample(actor, int(goal.condition), goal_noise(goal, T, dU)[None],
                              seeds=[int(goal.noise_seed)], source=source)
        return convert.trial_to_msg(tr.X[0], tr.U[0], tr.meta[0], P.Trajectory(), P)

    def fit(req):
        calls["fit"] += 1
        return proxies.handle_fit_dynamics(fitter, req, st.FitDynamicsResponse())

    def optimize(req):
        return proxies.handle_optimize(lqr, req, st.OptimizeResponse())

    yield agent, run_trial, fit, optimize, calls
    agent.close()


def train(cfg, out, stages, iterations, log, fit=None):
    agent, run_trial, fit_ok, optimize, _ = stages
    fit = fit or fit_ok
    reattached = []

    def reattach_stages(algo):
        reattached.append(algo.iteration)
        reattach(algo, [run_trial], fit, optimize)

    code = run_training(cfg, out, lambda: build_ros_algorithm(cfg, agent.task, [run_trial], fit,
                                                              optimize),
                        reattach_stages, log, iterations=iterations)
    return code, reattached


def metrics_rows(out):
    from gps_ros.experiment import Experiment

    return Experiment.open(out).read_metrics()


def test_trains_resumes_and_knows_when_it_is_done(small_cfg, stages, tmp_path):
    out = tmp_path / "exp"
    log = Log()
    code, reattached = train(small_cfg, out, stages, 1, log)
    assert code == 0 and reattached == []
    assert [r["iteration"] for r in metrics_rows(out)] == [1]
    assert any(line.startswith("iteration 1/1: cost ") for line in log.lines["info"])
    assert log.lines["info"][-1] == f"training done: 1 iterations, results in {out.resolve()}"
    assert stages[4]["trials"] == 2 * 3                       # 2 conditions x 3 trials
    # a second launch with a larger target resumes after iteration 1 with the transports back
    log = Log()
    code, reattached = train(small_cfg, out, stages, 2, log)
    assert code == 0 and reattached == [1]
    assert any(f"resuming {out.resolve()} after iteration 1" in line for line in log.lines["info"])
    assert [r["iteration"] for r in metrics_rows(out)] == [1, 2]
    assert stages[4]["trials"] == 2 * 2 * 3
    # a third with no new target: nothing to do, said so
    log = Log()
    code, _ = train(small_cfg, out, stages, 0, log)
    assert code == 0 and stages[4]["trials"] == 12
    assert f"{out.resolve()} already has 2 of 2 iterations" in log.lines["info"]


def test_a_failing_stage_is_one_line_and_keeps_the_completed_iterations(small_cfg, stages,
                                                                          tmp_path):
    out = tmp_path / "exp"
    assert train(small_cfg, out, stages, 1, Log())[0] == 0

    def broken_fit(req):
        raise proxies.RemoteStageError("fit_dynamics failed: LinAlgError: not positive definite")

    log = Log()
    code, _ = train(small_cfg, out, stages, 3, log, fit=broken_fit)
    assert code == 1
    assert log.lines["error"] == [
        "training failed: fit_dynamics failed: LinAlgError: not positive definite",
        f"the experiment in {out.resolve()} keeps every completed iteration; relaunch with "
        f"experiment_dir:={out.resolve()} to resume"]
    assert [r["iteration"] for r in metrics_rows(out)] == [1]
    # a launch that failed before committing an iteration changed nothing, its target included
    log = Log()
    assert train(small_cfg, out, stages, 0, log)[0] == 0
    assert f"{out.resolve()} already has 1 of 1 iterations" in log.lines["info"]
    assert train(small_cfg, out, stages, 2, Log())[0] == 0
    assert [r["iteration"] for r in metrics_rows(out)] == [1, 2]


def test_a_full_disk_is_one_line_and_the_relaunch_resumes(small_cfg, stages, tmp_path,
                                                           monkeypatch):
    """ENOSPC while iteration 2 commits: exit 1, the line says what is kept and how to resume
    over ROS; the relaunch ends with the costs of an uninterrupted run."""
    from conftest import fill_disk_at_commit

    out = tmp_path / "exp"
    fill_disk_at_commit(monkeypatch, 2)
    log = Log()
    assert train(small_cfg, out, stages, 3, log)[0] == 1
    err = log.lines["error"][0]
    assert err.startswith("training failed: no space left on the device writing "), err
    assert err.endswith(f"keeps iteration 1: free space and relaunch with "
                        f"experiment_dir:={out.resolve()}"), err
    monkeypatch.undo()
    assert train(small_cfg, out, stages, 0, Log())[0] == 0
    from gps_ros.train import train as train_in_process    # the dynamics prior in this process

    ref = train_in_process(small_cfg, tmp_path / "ref", iterations=3, progress=False)
    # the dynamics_node's prior kept running and saw the redone iteration's trials twice: equal
    # to ~1e-8, not bit for bit (the in-process route restores the prior from state.pkl)
    assert [r["cost"] for r in metrics_rows(out)] == pytest.approx(
        [r["cost"] for r in metrics_rows(ref)], rel=1e-6)


def test_an_interrupt_says_how_to_resume_and_is_raised(small_cfg, stages, tmp_path):
    def interrupted(req):
        raise KeyboardInterrupt

    log = Log()
    with pytest.raises(KeyboardInterrupt):
        train(small_cfg, tmp_path / "exp", stages, 1, log, fit=interrupted)
    assert log.lines["warning"] == [
        f"training interrupted: completed iterations are in {(tmp_path / 'exp').resolve()}; "
        f"relaunch with experiment_dir:={(tmp_path / 'exp').resolve()} to resume"]


def test_a_python_logger_works_too(small_cfg, stages, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="coord"):
        assert train(small_cfg, tmp_path / "e", stages, 1, logging.getLogger("coord"))[0] == 0
    assert "iteration 1/1: cost" in caplog.text


def test_iteration_line():
    m = {"iteration": 3, "cost": 1.23456, "final_distance": [0.01234, 0.2], "discarded": 1,
         "time": {"total": 4.567}}
    assert iteration_line(m, 10) == ("iteration 3/10: cost 1.235, final distance cm [1.2, 20.0], "
                                     "discarded 1, 4.57 s")
    m["inserted"] = [0.123, 1.0]
    assert "final distance cm [1.2, 20.0], inserted [0.12, 1.0], discarded 1" in iteration_line(m, 10)


class Transport:
    def __init__(self, name, up_after):
        self.name, self.up_after, self.polls = name, up_after, 0

    def ready(self):
        self.polls += 1
        return self.polls > self.up_after


def test_wait_for_samplers_returns_once_enough_are_up():
    ts = [Transport("/a", 0), Transport("/b", 3), Transport("/c", 10 ** 9)]
    assert wait_for_samplers(ts, 1, 5.0, poll=0.001) == ["/a"]
    assert wait_for_samplers(ts, 2, 5.0, poll=0.001) == ["/a", "/b"]
    assert ts[1].polls == 4                                   # polled until it answered
    got = wait_for_samplers(ts, 3, 0.05, poll=0.001)          # /c never: the timeout
    assert got == ["/a", "/b"]


def test_wait_for_samplers_stops_on_a_signal():
    def check():
        raise KeyboardInterrupt("stop requested")

    with pytest.raises(KeyboardInterrupt):
        wait_for_samplers([Transport("/a", 10 ** 9)], 1, 60.0, poll=0.001, check=check)


def test_required_samplers():
    assert required_samplers(0, 3) == 3
    assert required_samplers(2, 3) == 2 and required_samplers(3, 3) == 3
    for bad in (4, -1):
        with pytest.raises(ValueError, match=f"min_samplers {bad} must be between 1 and the 3"):
            required_samplers(bad, 3)
    msg = samplers_missing_error(["/a"], 2, 30.0, ["/b", "/c"])
    assert msg.startswith("only 1 of the 2 samplers needed answered within 30 s (missing: /b, /c)")
    assert "lower min_samplers" in msg


def test_a_model_based_learner_trains_over_the_samplers_as_in_process(tmp_path):
    """algorithm.type mbpo through the coordinator: the samplers run the exported actor with the
    trial's noise (TorchScriptPolicyActor, noise_input), the learner runs here; a relaunch resumes,
    and the metrics equal those of ``gps-ros train`` in-process, trial for trial."""
    pytest.importorskip("torch")
    import json

    from conftest import small_config_dict
    from gps_ros.config import parse_config
    from gps_ros.train import train as train_in_process

    d = small_config_dict()
    d["agent"]["T"] = 10
    d["algorithm"] = {"type": "mbpo", "samples_per_condition": 1}
    d["model_based"] = {"members": 2, "elites": 1, "model_hidden": [16], "model_max_epochs": 3,
                        "hidden": [16], "batch_size": 16, "utd": 1.0, "rollout_batch": 20,
                        "rollout_every": 5}
    cfg = parse_config(d, "t")
    agent = SimAgent(cfg.agent)
    exports = []

    def run_trial(goal):
        exports.append(goal.policy_checkpoint)
        actor, source, T, dU = actor_from_goal(goal)
        assert actor.noise_input and source == "policy"
        tr = agent.sample(actor, int(goal.condition), goal_noise(goal, T, dU)[None],
                          seeds=[int(goal.noise_seed)], source=source)
        return convert.trial_to_msg(tr.X[0], tr.U[0], tr.meta[0], P.Trajectory(), P)

    out, log = tmp_path / "exp", Log()
    try:
        for target in (1, 2):
            code = run_training(cfg, out, lambda: build_ros_algorithm(
                cfg, agent.task, [run_trial], None, None, checkpoint_dir=str(tmp_path / "policy")),
                lambda algo: reattach(algo, [run_trial], None, None), log, iterations=target)
            assert code == 0, log.lines["error"]
    finally:
        agent.close()
    assert any("resuming" in line for line in log.lines["info"])
    # one export per policy (the initial one, after iterations 1 and 2), each used by every
    # condition's trials: 2 training + 2 evaluation trials per iteration
    assert len(exports) == 8 and len(set(exports)) == 3
    ref = train_in_process(cfg, tmp_path / "ref", iterations=2, progress=False)
    rows = lambda run: [{k: v for k, v in json.loads(line).items() if k != "time"}  # noqa: E731
                        for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows(out) == rows(ref)
