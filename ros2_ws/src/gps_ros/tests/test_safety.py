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


@pytest.fixture
def limits():
    return SafetyLimits.from_urdf_string(URDF)


def state(q=(0.0, 0.0), qd=(0.0, 0.0), stamp=0.0):
    return JointStateSample(np.array(q, float), None if qd is None else np.array(qd, float), stamp)


# --- limits ------------------------------------------------------------------------------------
def test_urdf_limits(limits):
    assert limits.names == ("j1", "j2")
    np.testing.assert_allclose(limits.effort, [10, 5])
    np.testing.assert_allclose(limits.velocity, [2, 1])
    np.testing.assert_allclose(limits.lower, [-1, -2])
    np.testing.assert_allclose(limits.upper, [1, 0.5])
    sel = SafetyLimits.from_urdf_string(URDF, joints=["j2", "j1"])
    np.testing.assert_allclose(sel.effort, [5, 10])
    np.testing.assert_allclose(limits.select(["j2"]).velocity, [1])
    np.testing.assert_allclose(limits.scaled(0.5, 0.1).effort, [1, 0.5])


def test_urdf_errors():
    with pytest.raises(SafetyError, match="not valid XML"):
        SafetyLimits.from_urdf_string("<robot")
    with pytest.raises(SafetyError, match="'nope' is not a movable joint"):
        SafetyLimits.from_urdf_string(URDF, joints=["nope"])
    bad = URDF.replace('effort="5" ', "")
    with pytest.raises(SafetyError, match="j2"):
        SafetyLimits.from_urdf_string(bad)
    with pytest.raises(SafetyError, match="no <limit>"):
        SafetyLimits.from_urdf_string(
            '<robot name="r"><joint name="a" type="revolute"/></robot>')
    with pytest.raises(SafetyError, match="lower"):
        SafetyLimits(("a",), [1.0], [0.0], [1.0], [1.0])
    with pytest.raises(SafetyError, match="effort"):
        SafetyLimits(("a",), [0.0], [1.0], [1.0], [0.0])


def test_continuous_joint_has_no_position_limit():
    urdf = ('<robot name="r"><joint name="w" type="continuous">'
            '<limit effort="3" velocity="4"/></joint></robot>')
    lim = SafetyLimits.from_urdf_string(urdf)
    assert math.isinf(lim.lower[0]) and math.isinf(lim.upper[0])
    f = SafetyFilter(lim)
    u, st = f.filter([1.0], JointStateSample(np.array([100.0]), np.array([0.0]), 0.0), 0.0)
    assert st.ok and u[0] == 1.0


def test_panda_sim_limits():
    pytest.importorskip("pybullet_data")
    lim = SafetyLimits.panda_sim()
    assert lim.names == safety.PANDA_ARM_JOINTS
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
        SafetyFilter(limits, mode="position")
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
