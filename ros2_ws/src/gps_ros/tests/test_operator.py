"""The operator workflow without ROS: the coordinator's gate before each new condition, confirmed
by the Trigger service or Enter on the terminal, and the sampler proxy calling it."""
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gps_ros.config import load_config
from gps_ros.launch_plan import LaunchArgumentError, train_plan
from gps_ros.ros.operator import OperatorGate, describe_condition
from gps_ros.ros.proxies import RosSampler

PKG = Path(__file__).resolve().parents[1]


def _confirm_when_waiting(gate, via="service", times=1):
    def run():
        for _ in range(times):
            while not gate.waiting:
                time.sleep(0.005)
            assert gate.confirm(via)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_gate_waits_for_the_service_and_prompts_once_per_new_condition():
    said = []
    gate = OperatorGate(said.append, lambda k: f"object {k}", "/coordinator_node/continue", tty=None)
    assert not gate.confirm()                      # nothing waiting: refused
    t = _confirm_when_waiting(gate, times=2)
    gate.before_condition(0)
    gate.before_condition(0)                       # same set-up: no prompt
    gate.before_condition(1)
    t.join(2)
    assert gate.confirmations == [(0, "service"), (1, "service")]
    prompts = [s for s in said if s.startswith("OPERATOR")]
    assert len(prompts) == 2 and "prepare condition 1: object 1" in prompts[1]
    assert "ros2 service call /coordinator_node/continue std_srvs/srv/Trigger" in prompts[1]


def test_gate_reads_enter_from_the_terminal():
    r, w = os.pipe()
    path = f"/proc/self/fd/{r}"
    said = []
    gate = OperatorGate(said.append, str, "", tty=path)
    assert gate.has_terminal
    threading.Thread(target=lambda: (time.sleep(0.2), os.write(w, b"\n")), daemon=True).start()
    gate.before_condition(3)
    assert gate.confirmations == [(3, "terminal")] and "press Enter here" in said[0]
    os.close(w)


def test_gate_stops_on_shutdown_and_without_a_terminal_still_has_the_service():
    stop = threading.Event()
    gate = OperatorGate(lambda s: None, str, "/c/continue", tty="/nonexistent/tty",
                        should_stop=stop.is_set)
    assert not gate.has_terminal
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(KeyboardInterrupt):
        gate.before_condition(0)
    assert not gate.waiting


def test_sampler_proxy_asks_before_each_condition_s_trials():
    order = []
    res_types = RosSampler([]).types

    def run_trial(goal):
        from gps_ros.ros import convert
        from gps_ros.sample import TrialMeta

        order.append(("trial", int(goal.condition)))
        T, dU = int(goal.horizon), 2
        msg = res_types.Trajectory()
        return convert.trial_to_msg(np.zeros((T, 3)), np.zeros((T, dU)),
                                    TrialMeta(condition=int(goal.condition)), msg, res_types)

    from gps_ros.control.lin_gauss import LinearGaussianController

    ctrl = LinearGaussianController(np.zeros((4, 2, 3)), np.zeros((4, 2)),
                                    np.tile(np.eye(2), (4, 1, 1)))
    s = RosSampler([run_trial])
    s.before_condition = lambda k: order.append(("prepare", k))
    for cond in (0, 1):
        s.sample(ctrl, cond, np.zeros((2, 4, 2)))
    assert order == [("prepare", 0), ("trial", 0), ("trial", 0),
                     ("prepare", 1), ("trial", 1), ("trial", 1)]


def test_describe_and_launch_argument():
    cfg = load_config(PKG / "config" / "panda_vision.yaml")
    assert describe_condition(cfg.agent, 3) == "object at x=0.550 y=-0.200 z=0.300 m"
    specs = train_plan(str(PKG), str(PKG / "config" / "panda_reach.yaml"), use_sim="false",
                       prepare_conditions="true", experiment_dir="/tmp/x")
    coord = [s for s in specs if s.name == "coordinator_node"][0]
    assert coord.parameters[-1]["prepare_conditions"] is True
    with pytest.raises(LaunchArgumentError, match="prepare_conditions"):
        train_plan(str(PKG), str(PKG / "config" / "panda_reach.yaml"), prepare_conditions="maybe")
