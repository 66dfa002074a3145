"""The simulated robot behind sim_node (gps_ros/ros/sim_standin.py), without ROS, on the PyBullet
Panda of the CI config: lockstep stepping, the free-running zero-order hold and its timeout, bad
commands, resets, and the stop."""
import numpy as np
import pytest

from gps_ros.agents.sim import build_sim
from gps_ros.config import parse_config
from gps_ros.ros.sim_standin import SimStandIn

from conftest import small_config_dict


@pytest.fixture
def sim():
    s, _ = build_sim(parse_config(small_config_dict(), "test").agent)
    yield s
    s.close()


def reference(sim, condition, commands):
    """The same commands on a freshly reset simulator: the states the stand-in must reach."""
    sim.reset(condition)
    return [sim.step(u).copy() for u in commands]


def test_lockstep_steps_once_per_command_like_the_simulator(sim):
    robot = SimStandIn(sim, sim.dt, lockstep=True, command_timeout=0.2, initial_condition=1)
    us = [np.full(7, 0.5), np.full(7, -0.3), np.zeros(7)]
    got = []
    for u in us:
        assert robot.command(list(u)) == (True, None)
        got.append(robot.x.copy())
    assert robot.sim_time == pytest.approx(3 * sim.dt)
    assert robot.tick()[0]                      # a tick is also a step (the node has no timer)
    for a, b in zip(got, reference(sim, 1, us)):
        np.testing.assert_array_equal(a, b)


def test_a_bad_command_is_replaced_by_the_hold(sim):
    robot = SimStandIn(sim, sim.dt, lockstep=True, command_timeout=0.2)
    for bad in ([1.0] * 6, [np.nan] + [0.0] * 6, [1.0] * 1_000_000):
        advanced, refusal = robot.command(bad)
        assert advanced and refusal.startswith("ignoring bad command [") and refusal.endswith("holding")
        assert len(refusal) < 150                  # a hostile message's values are not all logged
        np.testing.assert_array_equal(robot.u, sim.hold_command())


def test_free_running_holds_the_last_command_then_times_out(sim):
    robot = SimStandIn(sim, 0.05, lockstep=False, command_timeout=0.1)
    assert robot.command([0.5] * 7) == (False, None)      # taken, not stepped
    assert robot.sim_time == 0.0
    applied = []
    real_step = sim.step
    sim.step = lambda u: applied.append(np.array(u)) or real_step(u)
    for _ in range(4):
        assert robot.tick() == (True, None)
    # 0, 0.05 and 0.1 s after the command it is applied; at 0.15 s it is too old: the hold
    for u in applied[:3]:
        np.testing.assert_array_equal(u, [0.5] * 7)
    np.testing.assert_array_equal(applied[3], sim.hold_command())
    assert robot.sim_time == pytest.approx(0.2)


def test_reset_returns_the_start_state_and_holds(sim):
    robot = SimStandIn(sim, sim.dt, lockstep=True, command_timeout=0.2)
    robot.command([0.5] * 7)
    x = robot.reset(1)
    np.testing.assert_array_equal(x, robot.x)
    np.testing.assert_array_equal(robot.u, sim.hold_command())
    np.testing.assert_allclose(x[:7], sim.reset(1)[:7])


def test_a_refused_step_reports_and_does_not_advance_time(sim):
    robot = SimStandIn(sim, sim.dt, lockstep=True, command_timeout=0.2)

    def refuse(u):
        raise ValueError("joint 3 exploded")
    sim.step = refuse
    assert robot.command([0.0] * 7) == (False, "sim step refused: joint 3 exploded")
    assert robot.sim_time == 0.0


def test_after_stop_nothing_steps_or_resets(sim):
    robot = SimStandIn(sim, sim.dt, lockstep=True, command_timeout=0.2)
    robot.stop()
    assert robot.command([0.0] * 7) == (False, None)
    assert robot.tick() == (False, None)
    with pytest.raises(RuntimeError, match="shutting down"):
        robot.reset(0)
