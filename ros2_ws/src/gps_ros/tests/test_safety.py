"""The safety filter: every stop condition, the clamps, the position limits, and the rate keeper."""
import math

import numpy as np
import pytest

from gps_ros import safety
from gps_ros.safety import (JointStateSample, RateKeeper, SafetyError, SafetyFilter,
                            SafetyLimits)

URDF = """<?xml version="1.0"?>
<robot name="two_link">
  <link name="base"/><link name="l1"/><link name="l2"/><link name="l3"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <limit effort="10" lower="-1.0" upper="1.0" velocity="2.0"/></joint>
  <joint name="fixed" type="fixed"><parent link="l1"/><child link="l2"/></joint>
  <joint name="j2" type="revolute"><parent link="l2"/><child link="l3"/>
    <limit effort="5" lower="-2.0" upper="0.5" velocity="1.0"/></joint>
</robot>
"""


def urdf_limits(urdf: str, joints=None) -> SafetyLimits:
    """The limits of a URDF's controlled joints (the chain base -> its last link by default)."""
    from gps_ros.robot import parse_description

    return parse_description(urdf, "test", None, "l3" if "l3" in urdf else "l1", joints, "effort",
                             None, None).limits()


@pytest.fixture
def limits():
    return urdf_limits(URDF)


def state(q=(0.0, 0.0), qd=(0.0, 0.0), stamp=0.0):
    return JointStateSample(np.array(q, float), None if qd is None else np.array(qd, float), stamp)


# --- limits ------------------------------------------------------------------------------------
def test_urdf_limits(limits):
    assert limits.names == ("j1", "j2")
    np.testing.assert_allclose(limits.effort, [10, 5])
    np.testing.assert_allclose(limits.velocity, [2, 1])
    np.testing.assert_allclose(limits.lower, [-1, -2])
    np.testing.assert_allclose(limits.upper, [1, 0.5])
    sel = urdf_limits(URDF, joints=["j2", "j1"])
    np.testing.assert_allclose(sel.effort, [5, 10])
    np.testing.assert_allclose(limits.select(["j2"]).velocity, [1])
    np.testing.assert_allclose(limits.scaled(0.5, 0.1).effort, [1, 0.5])


def test_urdf_errors():
    from gps_ros.robot import RobotError

    with pytest.raises(RobotError, match="not valid XML"):
        urdf_limits("<robot")
    with pytest.raises(RobotError, match="joint 'nope' is not in"):
        urdf_limits(URDF, joints=["nope"])
    bad = URDF.replace('effort="5" ', "")
    with pytest.raises(RobotError, match="'j2' needs a <limit> with effort and velocity"):
        urdf_limits(bad)
    with pytest.raises(RobotError, match="'j1' needs a <limit>"):
        urdf_limits('<robot name="r"><link name="base"/><link name="l1"/><joint name="j1" '
                    'type="revolute"><parent link="base"/><child link="l1"/></joint></robot>')
    with pytest.raises(SafetyError, match="lower"):
        SafetyLimits(("a",), [1.0], [0.0], [1.0], [1.0])
    with pytest.raises(SafetyError, match="effort"):
        SafetyLimits(("a",), [0.0], [1.0], [1.0], [0.0])


def test_continuous_joint_has_no_position_limit():
    urdf = ('<robot name="r"><link name="base"/><link name="l1"/><joint name="w" type="continuous">'
            '<parent link="base"/><child link="l1"/><limit effort="3" velocity="4"/></joint></robot>')
    lim = urdf_limits(urdf)
    assert math.isinf(lim.lower[0]) and math.isinf(lim.upper[0])
    f = SafetyFilter(lim)
    u, st = f.filter([1.0], JointStateSample(np.array([100.0]), np.array([0.0]), 0.0), 0.0)
    assert st.ok and u[0] == 1.0


def test_panda_sim_limits():
    from conftest import sim_limits

    lim = sim_limits()
    assert lim.names == tuple(f"panda_joint{i}" for i in range(1, 8))
    np.testing.assert_allclose(lim.effort, [87, 87, 87, 87, 12, 12, 12])
    np.testing.assert_allclose(lim.velocity, [2.175] * 4 + [2.61] * 3)
    assert lim.upper[3] == 0.0 and lim.lower[3] == pytest.approx(-3.1416)


# --- the ok path and the clamps ----------------------------------------------------------------
def test_ok_path(limits):
    f = SafetyFilter(limits, control_period=0.01)
    u, st = f.filter([1.0, -2.0], state(), now=0.005)
    np.testing.assert_array_equal(u, [1.0, -2.0])
    assert st.ok and st.code == safety.OK and st.reason == "" and not st.stopped and not st.modified
    assert f.counts[safety.OK] == 1


def test_clamp_effort(limits):
    f = SafetyFilter(limits, mode="effort")
    u, st = f.filter([50.0, -7.0], state(), now=0.0)
    np.testing.assert_array_equal(u, [10.0, -5.0])
    assert st.code == safety.CLAMPED and st.modified and not st.stopped
    assert st.joints == (0, 1) and "j1" in st.reason and "effort" in st.reason


def test_clamp_effort_scale(limits):
    f = SafetyFilter(limits, mode="effort", effort_scale=0.5)
    u, st = f.filter([6.0, 1.0], state(), now=0.0)
    np.testing.assert_array_equal(u, [5.0, 1.0])
    assert st.code == safety.CLAMPED and st.joints == (0,)


def test_velocity_mode_clamp(limits):
    f = SafetyFilter(limits, mode="velocity")
    u, st = f.filter([3.0, -0.5], state(), now=0.0)
    np.testing.assert_array_equal(u, [2.0, -0.5])
    assert st.code == safety.CLAMPED and "velocity" in st.reason and st.joints == (0,)
    # a velocity command inside the velocity limit but above a (smaller) effort number passes
    u, st = f.filter([1.5, 0.9], state(), now=0.0)
    assert st.ok


def test_bad_mode_and_shape(limits):
    with pytest.raises(SafetyError, match="mode"):
        SafetyFilter(limits, mode="torque")
    f = SafetyFilter(limits)
    with pytest.raises(SafetyError, match="shape"):
        f.filter([1.0, 2.0, 3.0], state(), 0.0)


# --- position limits -----------------------------------------------------------------------------
def test_position_limit_zeroes_outward_command(limits):
    f = SafetyFilter(limits, position_margin=0.1)
    # j1 beyond its soft upper limit (0.9): pushing further out (+) is zeroed, j2 untouched
    u, st = f.filter([3.0, 1.0], state(q=(0.95, 0.0)), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 1.0])
    assert st.code == safety.POSITION_LIMIT and st.joints == (0,) and not st.stopped
    assert "j1" in st.reason and "zeroed" in st.reason
    # pulling back inwards is allowed
    u, st = f.filter([-3.0, 1.0], state(q=(0.95, 0.0)), now=0.0)
    np.testing.assert_array_equal(u, [-3.0, 1.0])
    assert st.ok
    # lower side: j2 below soft lower (-1.9), negative command zeroed
    u, st = f.filter([0.0, -1.0], state(q=(0.0, -1.95)), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.code == safety.POSITION_LIMIT and st.joints == (1,)


def test_position_limit_brakes_in_effort_mode(limits):
    f = SafetyFilter(limits, position_margin=0.1, brake_gain=4.0)
    u, st = f.filter([3.0, 0.0], state(q=(0.95, 0.0), qd=(0.5, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [-2.0, 0.0])          # -brake_gain * qdot, opposing the motion
    assert st.code == safety.POSITION_LIMIT and "braked" in st.reason
    # moving inwards already: no pushing torque, no extra brake
    u, st = f.filter([3.0, 0.0], state(q=(0.95, 0.0), qd=(-0.5, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [0.0, 0.0])


def test_position_limit_velocity_mode(limits):
    f = SafetyFilter(limits, mode="velocity", position_margin=0.1, brake_gain=4.0)
    u, st = f.filter([0.5, 0.0], state(q=(0.95, 0.0), qd=(0.5, 0.0)), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])         # velocity mode: outward velocity zeroed
    assert st.code == safety.POSITION_LIMIT


# --- position mode -------------------------------------------------------------------------------
def test_position_mode_clamps_the_displacement_per_joint(limits):
    # max_step = velocity limit * velocity_scale * control_period = [2, 1] * 0.5 * 0.05
    f = SafetyFilter(limits, mode="position", control_period=0.05, velocity_scale=0.5,
                     effort_scale=0.01)                   # effort_scale: no effect on positions
    np.testing.assert_allclose(f.max_step, [0.05, 0.025])
    q = (0.1, -0.3)
    u, st = f.filter([0.4, -0.31], state(q=q), now=0.0)
    np.testing.assert_allclose(u, [0.15, -0.31])          # j1: 0.1 + 0.05; j2 within 0.025
    assert st.code == safety.CLAMPED and st.modified and not st.stopped and st.joints == (0,)
    assert "j1" in st.reason and "j2" not in st.reason and "displacement" in st.reason
    u, st = f.filter([-0.2, -0.5], state(q=q), now=0.0)
    np.testing.assert_allclose(u, [0.05, -0.325])         # both, downwards
    assert st.code == safety.CLAMPED and st.joints == (0, 1)
    u, st = f.filter([0.12, -0.29], state(q=q), now=0.0)
    np.testing.assert_array_equal(u, [0.12, -0.29])       # within the step: unchanged
    assert st.ok and not st.modified
    assert f.counts[safety.CLAMPED] == 2 and f.counts[safety.OK] == 1
    # the full velocity limit doubles the step
    f = SafetyFilter(limits, mode="position", control_period=0.05)
    u, st = f.filter([0.4, -0.5], state(q=q), now=0.0)
    np.testing.assert_allclose(u, [0.2, -0.35])


def test_position_mode_soft_limits(limits):
    # soft limits with margin 0.1: j1 [-0.9, 0.9], j2 [-1.9, 0.4]; a large step isolates them
    f = SafetyFilter(limits, mode="position", position_margin=0.1, max_step=1.0)
    u, st = f.filter([1.5, 0.45], state(q=(0.85, 0.3)), now=0.0)
    np.testing.assert_allclose(u, [0.9, 0.4])             # clamped to the soft limits
    assert st.code == safety.CLAMPED and st.joints == (0, 1) and "soft position limit" in st.reason
    u, st = f.filter([-1.5, -2.5], state(q=(-0.5, -1.5)), now=0.0)
    np.testing.assert_allclose(u, [-0.9, -1.9])
    assert st.code == safety.CLAMPED
    # already outside: further out is refused (held at the current position) ...
    u, st = f.filter([1.0, -2.0], state(q=(0.95, -1.95)), now=0.0)
    np.testing.assert_allclose(u, [0.95, -1.95])
    assert st.code == safety.POSITION_LIMIT and st.joints == (0, 1) and not st.stopped
    assert "j1 at 0.950" in st.reason and "j2 at -1.950" in st.reason
    # ... back inwards is allowed, also part of the way (still outside)
    u, st = f.filter([0.5, -1.92], state(q=(0.95, -1.95)), now=0.0)
    np.testing.assert_allclose(u, [0.5, -1.92])
    assert st.ok
    # one joint held, another clamped: POSITION_LIMIT names the held joint, the reason both
    u, st = f.filter([1.2, 0.45], state(q=(0.95, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [0.95, 0.4])
    assert st.code == safety.POSITION_LIMIT and st.joints == (0,) and "j2" in st.reason
    # inwards from outside, limited by the displacement limit
    f = SafetyFilter(limits, mode="position", position_margin=0.1, max_step=0.02)
    u, st = f.filter([0.5, 0.0], state(q=(0.95, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [0.93, 0.0])
    assert st.code == safety.CLAMPED and st.joints == (0,) and "displacement" in st.reason


def test_position_mode_max_step_override(limits):
    f = SafetyFilter(limits, mode="position", max_step=[0.01, 0.2], velocity_scale=0.5)
    np.testing.assert_allclose(f.max_step, [0.01, 0.2])  # as given, not scaled
    u, st = f.filter([0.5, 0.3], state(q=(0.0, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [0.01, 0.2])
    assert st.code == safety.CLAMPED and st.joints == (0, 1)
    f = SafetyFilter(limits, mode="position", max_step=0.03)
    u, _ = f.filter([-0.5, 0.3], state(q=(0.0, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [-0.03, 0.03])
    for bad in (0.0, -0.1, np.nan, np.inf, [0.1, 0.1, 0.1]):
        with pytest.raises(SafetyError, match="max_step"):
            SafetyFilter(limits, mode="position", max_step=bad)


def test_position_mode_holds_at_the_last_seen_positions(limits):
    f = SafetyFilter(limits, mode="position", control_period=0.01, hold_damping=2.0)
    u, st = f.filter([0.21, -0.295], state(q=(0.2, -0.3), qd=(1.0, 1.0), stamp=0.0), now=0.0)
    assert st.ok
    np.testing.assert_allclose(f.hold(), [0.2, -0.3])     # not a damping command
    # no state, a non-finite one: the last finite positions
    u, st = f.filter([0.25, -0.25], None, now=0.01)
    np.testing.assert_array_equal(u, [0.2, -0.3])
    assert st.code == safety.NO_STATE and st.stopped
    u, st = f.filter([0.25, -0.25], state(q=(np.nan, 0.7), stamp=0.01), now=0.01)
    np.testing.assert_array_equal(u, [0.2, -0.3])
    assert st.code == safety.NONFINITE_STATE
    # stale state: its positions are the last measured ones
    u, st = f.filter([0.25, -0.25], state(q=(0.22, -0.31), stamp=0.0), now=1.0)
    np.testing.assert_array_equal(u, [0.22, -0.31])
    assert st.code == safety.STALE_STATE and st.stopped
    # e-stop and cancel hold at the measured positions, not at the command
    f.e_stop("pedal")
    u, st = f.filter([0.3, -0.2], state(q=(0.24, -0.32), stamp=1.0), now=1.0)
    np.testing.assert_array_equal(u, [0.24, -0.32])
    assert st.code == safety.E_STOP
    f.reset_e_stop()
    f.cancel("client")
    u, st = f.filter([0.3, -0.2], state(q=(0.26, -0.33), stamp=1.0), now=1.0)
    np.testing.assert_array_equal(u, [0.26, -0.33])
    assert st.code == safety.CANCELLED
    # hold(joint_state) updates the target too; the returned array is a copy
    h = f.hold(state(q=(0.1, 0.1)))
    np.testing.assert_array_equal(h, [0.1, 0.1])
    h[:] = 9.0
    np.testing.assert_array_equal(f.hold(None), [0.1, 0.1])
    np.testing.assert_array_equal(f.last_position, [0.1, 0.1])
    # NaN / inf targets are refused: hold where the arm is
    f.begin_trial()
    u, st = f.filter([np.nan, 0.0], state(q=(0.3, 0.1), stamp=1.0), now=1.0)
    np.testing.assert_array_equal(u, [0.3, 0.1])
    assert st.code == safety.NONFINITE_COMMAND and st.stopped and "j1" in st.reason
    u, st = f.filter([0.3, -np.inf], state(q=(0.3, 0.1), stamp=1.0), now=1.0)
    assert st.code == safety.NONFINITE_COMMAND and "j2" in st.reason


def test_position_mode_hold_is_none_before_any_position(limits):
    f = SafetyFilter(limits, mode="position")
    assert f.hold() is None and f.hold(None) is None and f.last_position is None
    assert f.hold(state(q=(np.nan, 0.0))) is None
    u, st = f.filter([0.0, 0.0], None, now=0.0)
    assert u is None and st.stopped and st.code == safety.NO_STATE
    u, st = f.filter([0.0, 0.0], state(q=(0.0, np.inf)), now=0.0)
    assert u is None and st.code == safety.NONFINITE_STATE
    f.e_stop()
    u, st = f.filter([0.0, 0.0], None, now=0.0)
    assert u is None and st.code == safety.E_STOP
    # the other modes never hold with None
    for mode in ("effort", "velocity"):
        g = SafetyFilter(limits, mode=mode)
        np.testing.assert_array_equal(g.hold(), [0.0, 0.0])
        assert g.filter([0.0, 0.0], None, 0.0)[0] is not None


def test_position_mode_checks_the_state_shape(limits):
    f = SafetyFilter(limits, mode="position")
    with pytest.raises(SafetyError, match="3 positions"):
        f.filter([0.0, 0.0], state(q=(0.0, 0.0, 0.0), qd=None), 0.0)
    u, st = f.filter([0.0, 0.0], JointStateSample(None, None, 0.0), 0.0)
    assert u is None and st.code == safety.NO_STATE and "no positions" in st.reason


# --- stop conditions -----------------------------------------------------------------------------
def test_nan_command_refused(limits):
    f = SafetyFilter(limits)
    u, st = f.filter([np.nan, 1.0], state(), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.stopped and st.code == safety.NONFINITE_COMMAND and "j1" in st.reason


def test_inf_command_refused(limits):
    f = SafetyFilter(limits, mode="velocity")
    u, st = f.filter([1.0, -np.inf], state(), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.stopped and st.code == safety.NONFINITE_COMMAND and "j2" in st.reason


def test_nonfinite_state_holds(limits):
    f = SafetyFilter(limits)
    u, st = f.filter([1.0, 1.0], state(q=(np.nan, 0.0)), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.stopped and st.code == safety.NONFINITE_STATE and st.reason
    u, st = f.filter([1.0, 1.0], state(qd=(0.0, np.inf)), now=0.0)
    assert st.stopped and st.code == safety.NONFINITE_STATE


def test_no_state_holds(limits):
    f = SafetyFilter(limits)
    u, st = f.filter([1.0, 1.0], None, now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.stopped and st.code == safety.NO_STATE and "no joint state" in st.reason


def test_stale_watchdog(limits):
    f = SafetyFilter(limits, control_period=0.002, stale_periods=3, hold_damping=1.0)
    u, st = f.filter([1.0, 1.0], state(qd=(1.0, 1.0), stamp=1.0), now=1.0 + 0.0059)
    assert st.ok                                          # 2.95 periods: still fresh
    u, st = f.filter([1.0, 1.0], state(qd=(1.0, 1.0), stamp=1.0), now=1.0 + 0.0061)
    np.testing.assert_array_equal(u, [0.0, 0.0])          # stale: zero effort, no stale damping
    assert st.stopped and st.code == safety.STALE_STATE
    assert "6.1 ms old" in st.reason and "3 control periods" in st.reason
    u, st = f.filter([1.0, 1.0], state(stamp=float("nan")), now=1.0)
    assert st.code == safety.STALE_STATE


def test_e_stop_latches_until_reset(limits):
    f = SafetyFilter(limits)
    f.e_stop("operator pressed e-stop")
    assert f.e_stopped
    for _ in range(3):                                    # latched: fresh state does not clear it
        u, st = f.filter([1.0, 1.0], state(), now=0.0)
        np.testing.assert_array_equal(u, [0.0, 0.0])
        assert st.stopped and st.code == safety.E_STOP and "operator pressed" in st.reason
        assert "reset required" in st.reason
    f.begin_trial()                                       # a new trial does not clear it either
    assert f.filter([1.0, 1.0], state(), 0.0)[1].code == safety.E_STOP
    f.reset_e_stop()
    u, st = f.filter([1.0, 1.0], state(), now=0.0)
    assert st.ok and not f.e_stopped
    np.testing.assert_array_equal(u, [1.0, 1.0])


def test_e_stop_has_priority(limits):
    f = SafetyFilter(limits)
    f.cancel()
    f.e_stop()
    assert f.filter([np.nan, 1.0], None, 0.0)[1].code == safety.E_STOP


def test_cancel_holds(limits):
    f = SafetyFilter(limits, mode="effort", hold_damping=2.0)
    f.cancel("goal cancelled by client")
    u, st = f.filter([1.0, 1.0], state(qd=(0.5, -0.25)), now=0.0)
    np.testing.assert_allclose(u, [-1.0, 0.5])            # hold = damping only
    assert st.stopped and st.code == safety.CANCELLED and "goal cancelled" in st.reason
    f.begin_trial()
    assert f.filter([1.0, 1.0], state(), 0.0)[1].ok


def test_cancel_velocity_mode_holds_at_zero(limits):
    f = SafetyFilter(limits, mode="velocity", hold_damping=2.0)
    f.cancel()
    u, st = f.filter([1.0, 1.0], state(qd=(0.5, -0.25)), now=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert st.code == safety.CANCELLED


def test_every_stop_condition_has_a_reason(limits):
    f = SafetyFilter(limits, control_period=0.01)
    cases = {
        safety.NO_STATE: lambda: f.filter([0.0, 0.0], None, 0.0),
        safety.STALE_STATE: lambda: f.filter([0.0, 0.0], state(stamp=0.0), 1.0),
        safety.NONFINITE_STATE: lambda: f.filter([0.0, 0.0], state(q=(np.inf, 0)), 0.0),
        safety.NONFINITE_COMMAND: lambda: f.filter([np.nan, 0.0], state(), 0.0),
        safety.STALE_IMAGE: lambda: f.filter([0.0, 0.0], state(), 0.0, image_age=np.inf),
    }
    f.max_image_age = 0.1
    for code, call in cases.items():
        u, st = call()
        assert st.code == code and st.stopped and st.reason, code
    f.cancel()
    assert f.filter([0.0, 0.0], state(), 0.0)[1].reason
    f.e_stop()
    assert f.filter([0.0, 0.0], state(), 0.0)[1].reason
    assert set(cases) | {safety.CANCELLED, safety.E_STOP} == set(safety.STOP_CODES)


def test_filter_does_not_modify_input(limits):
    f = SafetyFilter(limits, position_margin=0.1)
    cmd = np.array([30.0, 1.0])
    f.filter(cmd, state(q=(0.95, 0.0)), 0.0)
    np.testing.assert_array_equal(cmd, [30.0, 1.0])


# --- rate keeper ---------------------------------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.t = 100.0
        self.sleeps = []

    def __call__(self):
        return self.t

    def sleep(self, dt):
        self.sleeps.append(dt)
        self.t += dt


def test_rate_keeper_keeps_rate():
    c = FakeClock()
    r = RateKeeper(500.0, clock=c, sleep=c.sleep)
    start = c.t
    for _ in range(10):
        c.t += 0.0005                                      # 0.5 ms of work per 2 ms period
        assert r.sleep()
    assert c.t == pytest.approx(start + 10 * 0.002)
    assert r.overruns == 0 and r.iterations == 10
    np.testing.assert_allclose(c.sleeps, 0.0015)


def test_rate_keeper_counts_overruns_and_rebases():
    c = FakeClock()
    r = RateKeeper(100.0, clock=c, sleep=c.sleep)
    c.t += 0.015                                           # 1.5 periods of work: overrun
    assert not r.sleep()
    assert r.overruns == 1 and r.max_lateness == pytest.approx(0.005)
    c.t += 0.001                                           # next deadline kept: 20 ms after start
    assert r.sleep()
    assert c.t == pytest.approx(100.02)
    c.t += 0.05                                            # 5 periods late: re-based, no burst
    assert not r.sleep()
    assert r.overruns == 2
    c.t += 0.001
    assert r.sleep() and c.t == pytest.approx(100.071 + 0.009)


def test_rate_keeper_validates():
    with pytest.raises(ValueError):
        RateKeeper(0.0)


def test_stale_camera_frame_holds_and_fresh_one_passes(limits):
    f = SafetyFilter(limits, control_period=0.01, hold_damping=1.0, max_image_age=0.1)
    u, st = f.filter([1.0, 1.0], state(qd=(0.5, 0.0)), 0.0, image_age=0.25)
    assert st.code == safety.STALE_IMAGE and st.stopped and "250 ms" in st.reason
    np.testing.assert_allclose(u, [-0.5, 0.0])            # the hold command, not the policy's
    assert f.filter([1.0, 1.0], state(), 0.0, image_age=math.inf)[1].reason == "no camera frame"
    # not latched: the next fresh frame acts again; no frame used -> no check
    assert f.filter([1.0, 1.0], state(), 0.0, image_age=0.05)[1].code == safety.OK
    assert f.filter([1.0, 1.0], state(), 0.0)[1].code == safety.OK
    assert f.counts[safety.STALE_IMAGE] == 2
