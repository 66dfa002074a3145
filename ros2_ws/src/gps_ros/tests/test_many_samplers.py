"""Several robots / hosts without ROS: the launch plan of one host's share (role:=samplers /
learner), the explicit sampler list, samplers that join late or die mid-iteration (their trials
re-run on the others, the results unchanged)."""
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gps_ros.agents import SimAgent
from gps_ros.launch_plan import (LaunchArgumentError, parse_indices, sampler_action_names,
                                 train_plan)
from gps_ros.ros.proxies import RosSampler, TrialJob, dispatch
from gps_ros.train import build_algorithm

from test_proxies import agent_transport

PKG = Path(__file__).resolve().parents[1]
REACH = str(PKG / "config" / "panda_reach.yaml")


def test_one_host_s_share_of_the_graph(tmp_path):
    # (the single host's viewer TF, robot_state_publisher on sampler_0, is a one-host extra)
    full = train_plan(str(PKG), REACH, num_samplers="4", sim_mode="lockstep", tf="false",
                      experiment_dir=str(tmp_path))
    b = train_plan(str(PKG), REACH, num_samplers="4", sim_mode="lockstep", role="samplers",
                   sampler_indices="2-3", experiment_dir=str(tmp_path))
    a = train_plan(str(PKG), REACH, num_samplers="4", role="learner", min_samplers="2",
                   sampler_wait="60", experiment_dir=str(tmp_path))
    names = lambda specs: sorted(f"{s.namespace}/{s.name}" for s in specs)  # noqa: E731
    assert names(b) == ["sampler_2/sampler_node", "sampler_2/sim_node",
                        "sampler_3/sampler_node", "sampler_3/sim_node"]
    assert names(a) == ["/coordinator_node", "/dynamics_node", "/trajopt_node"]
    # together with the other sampler host's share: exactly the single-host graph
    b0 = train_plan(str(PKG), REACH, num_samplers="4", sim_mode="lockstep", role="samplers",
                    sampler_indices="0,1", experiment_dir=str(tmp_path))
    assert sorted(names(a) + names(b0) + names(b)) == names(full)
    coord = [s for s in a if s.name == "coordinator_node"][0].parameters[-1]
    assert coord["samplers"] == [f"/sampler_{i}/run_trial" for i in range(4)]
    assert (coord["min_samplers"], coord["server_timeout"]) == (2, 60.0)
    sampler = [s for s in b if s.name == "sampler_node"][0].parameters[-1]
    assert sampler["image_transfer"] == "inline"      # frames travel in the result, not as paths
    full_sampler = [s for s in full if s.name == "sampler_node"][0].parameters[-1]
    assert "image_transfer" not in full_sampler
    # any names for the samplers
    a2 = train_plan(str(PKG), REACH, role="learner", samplers="/robot_a, lab2/arm/run_trial",
                    experiment_dir=str(tmp_path))
    coord = [s for s in a2 if s.name == "coordinator_node"][0].parameters[-1]
    assert coord["samplers"] == ["/robot_a/run_trial", "/lab2/arm/run_trial"]
    assert coord["min_samplers"] == 2


@pytest.mark.parametrize("kw,match", [
    (dict(role="robots"), "role"),
    (dict(role="samplers", sampler_indices="4", num_samplers="4"), "num_samplers:=5"),
    (dict(role="samplers", sampler_indices="1,1", num_samplers="2"), "twice"),
    (dict(role="samplers", sampler_indices="x", num_samplers="2"), "expected e.g."),
    (dict(sampler_indices="0"), "role:=samplers"),
    (dict(role="learner", samplers="/a", min_samplers="2"), "only 1 samplers"),
    (dict(role="learner", sampler_wait="soon"), "not a number"),
])
def test_bad_multi_host_arguments(kw, match, tmp_path):
    with pytest.raises(LaunchArgumentError, match=match):
        train_plan(str(PKG), REACH, experiment_dir=str(tmp_path), **kw)


def test_index_and_name_parsing():
    assert parse_indices("0, 2-4", 5) == [0, 2, 3, 4]
    assert sampler_action_names("a,/b/,/c/run_trial") == ["/a/run_trial", "/b/run_trial",
                                                          "/c/run_trial"]


class Sampler:
    """A fake sampler endpoint with a ``ready`` flag (up / joined / gone) that can die mid-trial."""

    def __init__(self, name, run, up=True):
        self.name, self.run, self.up = name, run, up
        self.calls = 0
        self.die_on_call = None

    def ready(self):
        return self.up

    def __call__(self, goal):
        self.calls += 1
        if self.die_on_call == self.calls:
            self.up = False
            raise RuntimeError(f"{self.name}: the server left the graph")
        return self.run(goal)


def test_late_and_lost_samplers_leave_the_results_unchanged(small_cfg, caplog):
    """Trials of a sampler that dies mid-iteration are re-run on another one and one that comes
    late takes trials from then on: every iteration's trials equal those of a single sampler."""
    cfg = small_cfg
    cfg.iterations = 3

    def run(samplers, hook=None):
        agents = [SimAgent(cfg.agent) for _ in samplers]
        ends = []
        try:
            eps = [Sampler(n, agent_transport(a), up=u) for (n, u), a in zip(samplers, agents)]
            rs = RosSampler(eps)
            rs.sampler_wait = 1.0
            rs.layout = agents[0].layout
            algo = build_algorithm(cfg, agents[0])
            algo.sampler = rs
            for it in range(cfg.iterations):
                if hook is not None:
                    hook(it, eps)
                res = algo.run_iteration()
                ends.append([tr.X[:, -1] for tr in res.samples])
            return ends, eps
        finally:
            for a in agents:
                a.close()

    ref, _ = run([("solo", True)])

    def hook(it, eps):
        if it == 0:
            eps[1].die_on_call = 2          # sampler b dies on its second trial of iteration 1
        if it == 1:
            eps[2].up = True                # sampler c joins in iteration 2

    with caplog.at_level("INFO"):
        got, eps = run([("a", True), ("b", True), ("c", False)], hook)
    for r, g in zip(ref, got):
        for x, y in zip(r, g):
            np.testing.assert_allclose(x, y, atol=1e-9)
    assert eps[1].calls == 2 and eps[2].calls > 0
    text = caplog.text
    assert "sampler b is gone" in text and "sampler c joined" in text


def test_no_sampler_up_fails_after_the_wait():
    rs = RosSampler([Sampler("x", lambda g: g, up=False)])
    rs.sampler_wait = 0.3
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="no sampler is up"):
        rs.live_samplers()
    assert time.monotonic() - t >= 0.3


def test_every_job_is_tried_on_every_worker_before_failing():
    tried = []
    lock = threading.Lock()

    def bad(tag):
        def f(goal):
            with lock:
                tried.append(tag)
            raise RuntimeError(f"{tag} down")
        return f

    ok = lambda g: g  # noqa: E731
    assert dispatch([TrialJob(0, 7)], [bad("a"), bad("b"), ok]) == [7]
    with pytest.raises(RuntimeError, match="a down.*b down|b down.*a down"):
        dispatch([TrialJob(0, 7)], [bad("a"), bad("b")])


def test_a_job_failing_late_is_taken_by_a_sampler_that_already_ran_out_of_work():
    """The queue is empty when a sampler's host dies seconds into a trial: a sampler that had
    finished its own jobs must still take the failed one."""
    def slow_then_dead(goal):
        time.sleep(0.3)
        raise RuntimeError("host gone")

    def quick(goal):
        time.sleep(0.05)
        return goal * 10

    out = dispatch([TrialJob(i, i) for i in range(3)], [quick, slow_then_dead])
    assert out == [0, 10, 20]
