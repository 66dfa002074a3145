"""Automatic reset moves (gps_ros.reset): the minimum-jerk profile, its limits, the move on the
simulated Panda standing in for a torque-controlled robot, and every way a move fails."""
from conftest import sim_limits
from pathlib import Path

import numpy as np
import pytest

from gps_ros.config import load_config
from gps_ros.reset import (JointMove, ResetSettings, min_jerk, move_duration, run_move,
                           start_pose)
from gps_ros.safety import JointStateSample, SafetyFilter, SafetyLimits

CONFIG = Path(__file__).resolve().parents[1] / "config" / "panda_reach.yaml"


def test_min_jerk_rests_at_both_ends_and_derivatives_agree():
    q0, q1, T = np.array([0.0, 1.0]), np.array([1.0, -1.0]), 2.0
    for t, want in ((0.0, q0), (T, q1), (5.0, q1)):
        q, qd, qdd = min_jerk(q0, q1, T, t)
        np.testing.assert_allclose(q, want)
        np.testing.assert_allclose(qd, 0, atol=1e-12)
        np.testing.assert_allclose(qdd, 0, atol=1e-12)
    np.testing.assert_allclose(min_jerk(q0, q1, T, T / 2)[0], (q0 + q1) / 2)
    h = 1e-6
    for t in (0.3, 1.0, 1.7):
        q_p, qd_p, _ = min_jerk(q0, q1, T, t + h)
        q_m, qd_m, _ = min_jerk(q0, q1, T, t - h)
        _, qd, qdd = min_jerk(q0, q1, T, t)
        np.testing.assert_allclose((q_p - q_m) / (2 * h), qd, atol=1e-6)
        np.testing.assert_allclose((qd_p - qd_m) / (2 * h), qdd, atol=1e-5)


def test_move_duration_keeps_the_profile_within_the_limits():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q0, q1 = rng.uniform(-2, 2, 7), rng.uniform(-2, 2, 7)
        vmax, amax = rng.uniform(0.2, 2.0, 7), 1.5
        T = move_duration(q0, q1, vmax, amax, min_duration=0.1)
        ts = np.linspace(0, T, 2001)
        qd = np.array([min_jerk(q0, q1, T, t)[1] for t in ts])
        qdd = np.array([min_jerk(q0, q1, T, t)[2] for t in ts])
        assert np.all(np.abs(qd) <= vmax * (1 + 1e-6))
        assert np.all(np.abs(qdd) <= amax * (1 + 1e-6))
        # and it is the shortest: one limit is (nearly) reached
        assert max((np.abs(qd) / vmax).max(), (np.abs(qdd) / amax).max()) > 0.999
    assert move_duration(np.zeros(2), np.zeros(2), 1.0, 1.0, min_duration=0.5) == 0.5


@pytest.fixture(scope="module")
def panda():
    """The simulated Panda (gravity compensated, as a robot's effort interface) + a kinematic
    model of it for the mass matrix (never stepped)."""
    from gps_ros.agents.sim import build_sim
    from gps_ros.sim.arm import ArmSim

    cfg = load_config(CONFIG)
    sim, _ = build_sim(cfg.agent)
    model = ArmSim(cfg.agent)
    yield cfg, sim, model
    sim.close()
    model.close()


def _filter(sim):
    return SafetyFilter(sim_limits(), control_period=sim.dt, stale_periods=3)


def _settings(cfg):
    return ResetSettings(max_velocity=sim_limits().velocity * 0.2,
                         viscous_friction=cfg.agent.joint_damping)


def _run(sim, move, x, t=0.0, steps=400, hook=None):
    lay = sim.layout
    for k in range(steps):
        js = JointStateSample(x[lay.joint_pos], x[lay.joint_vel], t)
        if hook is not None:
            js = hook(k, js)
        u, st = move.step(js, t)
        if st.done or st.failed:
            return st, x
        x = sim.step(u)
        t += sim.dt
    raise AssertionError("move neither finished nor failed")


def test_every_condition_start_pose_reached_from_disturbed_poses(panda):
    """Start poses reached within tolerance for every condition, in about the planned time."""
    cfg, sim, model = panda
    rng = np.random.default_rng(0)
    for cond in range(len(cfg.agent.conditions)):
        sim.reset((cond + 1) % len(cfg.agent.conditions))
        goal = start_pose(cfg.agent, cond)
        sim.pose_scene(goal + rng.uniform(-0.5, 0.5, 7), sim.target)
        move = JointMove(goal, _filter(sim), _settings(cfg), mass_matrix=model.mass_matrix)
        st, x = _run(sim, move, sim.state())
        assert st.done, st.reason
        q = x[sim.layout.joint_pos]
        assert np.abs(q - goal).max() <= 0.01 and np.abs(x[sim.layout.joint_vel]).max() <= 0.02
        assert st.elapsed <= move.duration + 0.5, (st.elapsed, move.duration)
        peak = sim_limits().velocity * 0.2
        assert move.duration >= 1.875 * np.abs(goal - move.start).max() / peak.max()


def test_trials_after_a_reset_are_reproducible(panda):
    """The same controller and noise after resets from different poses: the same trial, to a few
    millimetres at the end effector (what a fitted local model needs)."""
    from gps_ros.control.init import pd_hold_controller

    cfg, sim, model = panda
    lay = sim.layout
    goal = start_pose(cfg.agent, 0)
    rng = np.random.default_rng(3)
    noise = np.random.default_rng(7).standard_normal((40, 7))
    M = model.mass_matrix(goal)
    ctrl = pd_hold_controller(40, sim.dX, goal, lay.joint_state_indices[:7], lay.joint_state_indices[7:], M * 10.0, M * 6.0,
                              M @ M * 2.0)          # the initial controller of a GPS run
    ends = []
    for _ in range(3):
        sim.reset(0)
        sim.pose_scene(goal + rng.uniform(-0.4, 0.4, 7), sim.target)
        move = JointMove(goal, _filter(sim), _settings(cfg), mass_matrix=model.mass_matrix)
        st, x = _run(sim, move, sim.state())
        assert st.done, st.reason
        for t in range(40):
            x = sim.step(ctrl.act(t, x, noise[t]))
        ends.append(x[lay.ee_indices][:3].copy())
    spread = np.ptp(np.array(ends), axis=0).max()
    assert spread < 0.005, spread


def test_velocity_interface_on_a_kinematic_plant():
    lim = SafetyLimits(("a", "b"), [-3, -3], [3, 3], [1.0, 1.0], [10.0, 10.0])
    f = SafetyFilter(lim, mode="velocity", control_period=0.002, stale_periods=5)
    move = JointMove([1.0, -0.5], f, ResetSettings(max_velocity=0.5, max_acceleration=2.0))
    q, qd, t = np.zeros(2), np.zeros(2), 0.0
    while True:
        u, st = move.step(JointStateSample(q, qd, t), t)
        if st.done or st.failed:
            break
        qd = u
        q = q + u * 0.002
        t += 0.002
    assert st.done and np.abs(q - [1.0, -0.5]).max() <= 0.01
    assert abs(st.elapsed - move.duration) < 0.05


class LaggingPositionPlant:
    """A position-controlled joint: the measured position follows the commanded target with a
    first-order lag, q' = (u - q) / tau (exact discretisation over each control period)."""

    def __init__(self, q0, dt, tau):
        self.q = np.array(q0, dtype=float)
        self.qd = np.zeros_like(self.q)
        self.dt = dt
        self.a = 1.0 - np.exp(-dt / tau)

    def step(self, u):
        q_new = self.q + self.a * (np.asarray(u, dtype=float) - self.q)
        self.qd = (q_new - self.q) / self.dt
        self.q = q_new


def test_position_interface_on_a_lagging_plant():
    from gps_ros import safety

    dt = 0.01
    lim = SafetyLimits(("a", "b"), [-3, -3], [3, 3], [1.0, 1.0], [10.0, 10.0])
    f = SafetyFilter(lim, mode="position", control_period=dt, stale_periods=5)
    max_step = 1.0 * dt                                   # velocity limit * control period
    np.testing.assert_allclose(f.max_step, max_step)
    goal = np.array([1.0, -0.5])
    move = JointMove(goal, f, ResetSettings(max_velocity=0.5, max_acceleration=2.0))
    # the lag (about 0.5 rad/s * 25 ms) exceeds max_step near the profile's peak speed
    plant, t = LaggingPositionPlant([0.0, 0.0], dt, tau=0.025), 0.0
    while True:
        q = plant.q.copy()
        u, st = move.step(JointStateSample(q, plant.qd.copy(), t), t)
        if st.done or st.failed:
            break
        # the command is the profile's position, limited to max_step from the measured one
        q_ref = min_jerk(move.start, goal, move.duration, t)[0]
        np.testing.assert_allclose(u, np.clip(q_ref, q - max_step, q + max_step), atol=1e-12)
        assert np.abs(u - q).max() <= max_step + 1e-12
        plant.step(u)
        t += dt
    assert st.done, st.reason
    assert np.abs(plant.q - goal).max() <= 0.01
    assert f.counts[safety.CLAMPED] > 0                   # the displacement limit did bind
    assert st.elapsed <= move.duration + 1.0, (st.elapsed, move.duration)
    np.testing.assert_array_equal(u, plant.q)             # done: hold where the arm is


def test_position_interface_sends_nothing_without_a_position():
    lim = SafetyLimits(("a", "b"), [-3, -3], [3, 3], [1.0, 1.0], [10.0, 10.0])
    f = SafetyFilter(lim, mode="position", control_period=0.01)
    move = JointMove([0.5, 0.5], f)
    u, st = move.step(None, 0.0)
    assert u is None and st.failed and "no joint state" in st.reason
    assert move.step(None, 0.01)[0] is None               # failed: the hold, still None

    sent = []
    move = JointMove([0.5, 0.5], SafetyFilter(lim, mode="position", control_period=0.01))
    st = run_move(move, lambda: None, sent.append, lambda: None, lambda: 0.0)
    assert st.failed and "no joint state" in st.reason and sent == []
    move = JointMove([0.5, 0.5], SafetyFilter(lim, mode="position", control_period=0.01))
    st = run_move(move, lambda: None, sent.append, lambda: None, lambda: 0.0, lambda: True)
    assert st.failed and "shutting down" in st.reason and sent == []


def test_position_interface_holds_where_the_arm_is_on_a_stop():
    dt = 0.01
    lim = SafetyLimits(("a", "b"), [-3, -3], [3, 3], [1.0, 1.0], [10.0, 10.0])
    f = SafetyFilter(lim, mode="position", control_period=dt)
    move = JointMove([1.0, -0.5], f, ResetSettings(max_velocity=0.5, max_acceleration=2.0))
    plant = LaggingPositionPlant([0.0, 0.0], dt, tau=0.025)
    clock = {"t": 0.0, "n": 0}
    sent, read = [], []

    def read_state():
        read.append(plant.q.copy())
        return JointStateSample(plant.q.copy(), plant.qd.copy(), clock["t"])

    def send(u):
        sent.append(np.array(u))
        plant.step(u)
        clock["t"] += dt
        clock["n"] += 1
        if clock["n"] == 50:
            f.e_stop("pedal")

    st = run_move(move, read_state, send, lambda: None, lambda: clock["t"])
    assert st.failed and "pedal" in st.reason and len(sent) == 51
    assert np.abs(sent[-2] - read[-2]).max() > 0         # moving towards the goal ...
    np.testing.assert_array_equal(sent[-1], read[-1])     # ... then held at the measured pose


def test_a_move_fails_with_the_reason(panda):
    cfg, sim, model = panda
    goal = start_pose(cfg.agent, 1)
    sim.reset(0)

    # e-stop mid-move: held, failed with the filter's reason
    f = _filter(sim)
    move = JointMove(goal, f, _settings(cfg), mass_matrix=model.mass_matrix)
    st, _ = _run(sim, move, sim.state(), hook=lambda k, js: (f.e_stop("pedal") if k == 5 else None) or js)
    assert st.failed and "e-stop" in st.reason and "pedal" in st.reason

    # joint states stop arriving (stale): failed
    sim.reset(0)
    move = JointMove(goal, _filter(sim), _settings(cfg), mass_matrix=model.mass_matrix)
    frozen = {}

    def stale(k, js):
        if k >= 5:
            return frozen.setdefault("js", js)
        return js
    st, _ = _run(sim, move, sim.state(), hook=stale)
    assert st.failed and "old" in st.reason

    # a robot that does not follow (commands not reaching it): timeout naming the joint
    lim = sim_limits()
    f = SafetyFilter(lim, control_period=0.05)
    q0 = start_pose(cfg.agent, 0)
    move = JointMove(q0 + 0.3, f, ResetSettings(settle_timeout=1.0))
    t = 0.0
    while True:
        u, st = move.step(JointStateSample(q0, np.zeros(7), t), t)
        if st.failed or st.done:
            break
        t += 0.05
    assert st.failed and "start pose not reached" in st.reason and "panda_joint" in st.reason

    with pytest.raises(ValueError, match="outside the soft position limits"):
        JointMove(np.full(7, 5.0), f)
    with pytest.raises(ValueError, match="7 finite"):
        JointMove(np.zeros(6), f)


def test_run_move_stops_on_shutdown(panda):
    cfg, sim, model = panda
    sim.reset(0)
    lay = sim.layout
    state = {"x": sim.state(), "t": 0.0, "n": 0}
    sent = []
    move = JointMove(start_pose(cfg.agent, 2), _filter(sim), _settings(cfg),
                     mass_matrix=model.mass_matrix)

    def send(u):
        sent.append(u)
        state["x"] = sim.step(u)
        state["t"] += sim.dt
        state["n"] += 1

    st = run_move(move, lambda: JointStateSample(state["x"][lay.joint_pos],
                                                 state["x"][lay.joint_vel], state["t"]),
                  send, lambda: None, lambda: state["t"], lambda: state["n"] >= 3)
    assert st.failed and "shutting down" in st.reason
    np.testing.assert_array_equal(sent[-1], np.zeros(7))       # the last command holds
