"""The safety filter's contract at its edges: which settings it refuses (and which it accepts at
the boundary), the exact reason of every stop (what an operator reads), the hold command with
damping, and the limits' own checks.  Complements test_safety.py (the behaviour in operation)."""
import math

import numpy as np
import pytest

from gps_ros.safety import (E_STOP, NO_STATE, NONFINITE_COMMAND, NONFINITE_STATE, STALE_IMAGE,
                            STALE_STATE, JointStateSample, SafetyError, SafetyFilter, SafetyLimits)

from test_safety import URDF, urdf_limits


def limits():
    return urdf_limits(URDF)           # j1: ±1 rad, 2 rad/s, 10 N·m; j2: [-2, 0.5], 1 rad/s, 5 N·m


def js(q=(0.0, 0.0), qd=(0.0, 0.0), stamp=0.0):
    return JointStateSample(None if q is None else np.array(q, float),
                            None if qd is None else np.array(qd, float), stamp)


# --- the limits ----------------------------------------------------------------------------------
def test_limits_check_their_sizes_and_are_read_only():
    with pytest.raises(SafetyError, match=r"^SafetyLimits.velocity has 1 values for 2 joints$"):
        SafetyLimits(["a", "b"], [-1, -1], [1, 1], [1.0], [1, 1])
    lim = SafetyLimits(["a", "b"], [-1, -1], [1, 1], [[1, 2]], [3, 4])    # any shape of n values
    assert lim.names == ("a", "b") and lim.velocity.dtype == np.float64
    np.testing.assert_array_equal(lim.velocity, [1.0, 2.0])
    with pytest.raises(ValueError):
        lim.effort[0] = 100.0                                             # frozen


@pytest.mark.parametrize("lower, upper, ok", [
    ([-1, 0.3], [1, 0.3], True),                    # lower == upper: allowed
    ([-1, 0.4], [1, 0.3], False),
    ([np.nan, 0], [1, 1], False),
    ([-1, 0], [1, np.nan], False),
    ([-np.inf, 0], [np.inf, 1], True),              # continuous joint
])
def test_limits_need_lower_at_most_upper_and_no_nan(lower, upper, ok):
    make = lambda: SafetyLimits(["a", "b"], lower, upper, [1, 1], [1, 1])  # noqa: E731
    if ok:
        make()
    else:
        with pytest.raises(SafetyError, match="must be <= upper"):
            make()


def test_scaled_and_selected_limits():
    lim = limits()
    s = lim.scaled(velocity=0.5, effort=0.25)
    np.testing.assert_allclose(s.velocity, [1.0, 0.5])
    np.testing.assert_allclose(s.effort, [2.5, 1.25])
    np.testing.assert_array_equal(s.lower, lim.lower)
    with pytest.raises(SafetyError, match=r"^joint 'j9' not in the limits \(have \['j1', 'j2'\]\)$"):
        lim.select(["j2", "j9"])


# --- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, message", [
    ({"control_period": 0.0}, "control_period and stale_periods must be > 0"),
    ({"stale_periods": 0.0}, "control_period and stale_periods must be > 0"),
    ({"effort_scale": 0.0}, r"effort_scale and velocity_scale must be in \(0, 1\]"),
    ({"effort_scale": 1.5}, r"effort_scale and velocity_scale must be in \(0, 1\]"),
    ({"velocity_scale": 0.0}, r"effort_scale and velocity_scale must be in \(0, 1\]"),
    ({"velocity_scale": 1.5}, r"effort_scale and velocity_scale must be in \(0, 1\]"),
    ({"position_margin": -0.1}, "position_margin, hold_damping and brake_gain must be >= 0"),
    ({"hold_damping": -1.0}, "position_margin, hold_damping and brake_gain must be >= 0"),
    ({"brake_gain": -1.0}, "position_margin, hold_damping and brake_gain must be >= 0"),
    ({"mode": "torque"}, "safety mode must be 'effort', 'velocity' or 'position'"),
])
def test_bad_settings_are_refused_with_their_reason(kw, message):
    with pytest.raises(SafetyError, match="^" + message):
        SafetyFilter(limits(), **kw)


@pytest.mark.parametrize("kw", [{"stale_periods": 0.5}, {"effort_scale": 1.0, "velocity_scale": 1.0},
                                {"position_margin": 0.0, "hold_damping": 0.0, "brake_gain": 0.0},
                                {"effort_scale": 1e-3, "velocity_scale": 1e-3}])
def test_settings_at_the_boundary_are_accepted(kw):
    SafetyFilter(limits(), **kw)


def test_defaults_three_periods_of_staleness_and_a_zero_hold():
    f = SafetyFilter(limits(), control_period=0.05)
    assert f.max_age == pytest.approx(0.15)
    np.testing.assert_array_equal(f.hold(js(qd=(1.0, -1.0))), [0.0, 0.0])


def test_velocity_scale_scales_the_velocity_bound_and_the_position_step():
    f = SafetyFilter(limits(), "velocity", velocity_scale=0.5)
    u, _ = f.filter([5.0, -5.0], js(), now=0.0)
    np.testing.assert_allclose(u, [1.0, -0.5])
    f = SafetyFilter(limits(), "position", velocity_scale=0.5, control_period=0.1)
    np.testing.assert_allclose(f.max_step, [0.1, 0.05])
    f = SafetyFilter(limits(), "position", max_step=1)
    assert f.max_step.dtype == np.float64


def test_position_margin_is_capped_at_half_the_range():
    lim = SafetyLimits(["a"], [0.0], [0.1], [1.0], [1.0])
    f = SafetyFilter(lim, position_margin=1.0)
    np.testing.assert_allclose([f.soft_lower[0], f.soft_upper[0]], [0.05, 0.05])


# --- the hold command ---------------------------------------------------------------------------
def test_effort_hold_damps_the_measured_velocity_within_the_effort_limits():
    f = SafetyFilter(limits(), hold_damping=4.0)
    np.testing.assert_allclose(f.hold(js(qd=(1.0, -0.5))), [-4.0, 2.0])
    np.testing.assert_allclose(f.hold(js(qd=(10.0, -10.0))), [-10.0, 5.0])     # clamped
    np.testing.assert_array_equal(f.hold(js(qd=(np.nan, 0.0))), [0.0, 0.0])    # not finite
    np.testing.assert_array_equal(f.hold(js(qd=(1.0, 2.0, 3.0))), [0.0, 0.0])  # wrong size
    np.testing.assert_array_equal(f.hold(js(qd=None)), [0.0, 0.0])
    np.testing.assert_array_equal(SafetyFilter(limits(), "velocity", hold_damping=4.0)
                                  .hold(js(qd=(1.0, 1.0))), [0.0, 0.0])


def test_a_stop_holds_with_the_damped_command_and_says_it_modified_it():
    f = SafetyFilter(limits(), hold_damping=2.0)
    f.e_stop()
    u, st = f.filter([1.0, 1.0], js(qd=(1.0, 0.0)), now=0.0)
    np.testing.assert_allclose(u, [-2.0, 0.0])
    assert st.stopped and st.modified and st.code == E_STOP


# --- the reasons ------------------------------------------------------------------------------
def test_every_stop_names_its_reason():
    f = SafetyFilter(limits(), control_period=0.05, max_image_age=0.1)

    def reason(*args, **kw):
        _, st = f.filter(*args, **kw)
        assert st.stopped
        return st.code, st.reason

    f.e_stop()
    assert reason([0, 0], js(), 0.0) == (E_STOP, "e-stop latched (e-stop); reset required")
    f.reset_e_stop()
    f.e_stop("button 2")
    assert reason([0, 0], js(), 0.0) == (E_STOP, "e-stop latched (button 2); reset required")
    f.reset_e_stop()
    f.cancel()
    assert reason([0, 0], js(), 0.0)[1] == "holding: trial cancelled"
    f.begin_trial()
    assert reason([0, 0], None, 0.0) == (NO_STATE, "no joint state received yet")
    assert reason([0, 0], js(q=None), 0.0) == (NO_STATE, "joint state has no positions")
    assert reason([0, 0], js(stamp=0.0), 0.2) == (
        STALE_STATE, "joint state is 200.0 ms old (> 3 control periods = 150.0 ms)")
    assert reason([0, 0], js(q=(0.0, np.inf)), 0.0) == (NONFINITE_STATE, "non-finite joint state")
    assert reason([0, 0], js(qd=(np.nan, 0.0)), 0.0) == (NONFINITE_STATE, "non-finite joint state")
    assert reason([0, 0], js(), 0.0, image_age=0.25) == (
        STALE_IMAGE, "camera frame is 250 ms older than the joint state (> 100 ms)")
    assert reason([0, 0], js(), 0.0, image_age=math.inf) == (STALE_IMAGE, "no camera frame")
    assert reason([np.nan, 1.0], js(), 0.0) == (NONFINITE_COMMAND,
                                                "non-finite command for joints ['j1']")


def test_ages_exactly_at_the_bounds_pass():
    f = SafetyFilter(limits(), control_period=0.25, stale_periods=2.0, max_image_age=0.5)
    _, st = f.filter([0.0, 0.0], js(stamp=1.0), now=1.5)            # 0.5 s = 2 periods
    assert not st.stopped
    _, st = f.filter([0.0, 0.0], js(stamp=1.0), now=1.0, image_age=0.5)
    assert not st.stopped


# --- position mode: what was clamped and why ------------------------------------------------------
def position_filter():
    # soft limits j1 [-0.95, 0.95], j2 [-1.95, 0.45]; max_step = velocity · period = 0.1, 0.05
    return SafetyFilter(limits(), "position", control_period=0.05)


@pytest.mark.parametrize("q, u, out, code, reason", [
    ((0.0, 0.0), (0.5, 0.0), (0.1, 0.0), "clamped",
     "position clamped on j1 (displacement limit 0.1 rad from 0.000)"),
    ((0.0, 0.0), (-0.5, 0.0), (-0.1, 0.0), "clamped",
     "position clamped on j1 (displacement limit 0.1 rad from 0.000)"),
    ((0.9, 0.0), (1.2, 0.0), (0.95, 0.0), "clamped", "position clamped on j1 (soft position limit 0.950)"),
    ((-0.9, 0.0), (-1.2, 0.0), (-0.95, 0.0), "clamped",
     "position clamped on j1 (soft position limit -0.950)"),
    ((0.95, 0.0), (1.0, 0.0), (0.95, 0.0), "clamped",          # at the soft limit: not beyond it
     "position clamped on j1 (soft position limit 0.950)"),
    ((0.97, 0.0), (1.0, -0.3), (0.97, -0.05), "position_limit",
     "position limit: outward target held at the current position for j1 at 0.970 (> soft limit "
     "0.950); position clamped on j2 (displacement limit 0.05 rad from 0.000)"),
    ((-0.97, 0.0), (-1.0, 0.0), (-0.97, 0.0), "position_limit",
     "position limit: outward target held at the current position for j1 at -0.970 (< soft limit "
     "-0.950)"),
    ((0.97, 0.0), (0.9, 0.0), (0.9, 0.0), "ok", ""),           # back inwards: allowed
])
def test_position_targets_are_clamped_with_the_reason(q, u, out, code, reason):
    f = position_filter()
    got, st = f.filter(u, js(q=q), now=0.0)
    np.testing.assert_allclose(got, out, atol=1e-12)
    assert (st.code, st.reason) == (code, reason)
    assert st.modified == (code != "ok") and not st.stopped
    assert f.counts[code] == 1 and sum(f.counts.values()) == 1


# --- effort mode beyond a soft limit ---------------------------------------------------------------
@pytest.mark.parametrize("q, qd, u, gain, out, reason", [
    ((0.97, 0.0), (0.5, 0.0), (3.0, 1.0), 2.0, (-1.0, 1.0),
     "position limit: outward command braked for j1 at 0.970 (> soft limit 0.950)"),
    ((-0.97, 0.0), (-0.5, 0.0), (-3.0, 0.0), 2.0, (1.0, 0.0),
     "position limit: outward command braked for j1 at -0.970 (< soft limit -0.950)"),
    ((0.97, 0.0), (10.0, 0.0), (3.0, 0.0), 2.0, (-10.0, 0.0),       # brake within the effort limit
     "position limit: outward command braked for j1 at 0.970 (> soft limit 0.950)"),
    ((0.97, 0.0), (-0.5, 0.0), (3.0, 0.0), 2.0, (0.0, 0.0),         # already coming back: no push
     "position limit: outward command braked for j1 at 0.970 (> soft limit 0.950)"),
    ((0.97, 0.0), (0.5, 0.0), (3.0, 0.0), 0.0, (0.0, 0.0),
     "position limit: outward command zeroed for j1 at 0.970 (> soft limit 0.950)"),
])
def test_effort_beyond_a_soft_limit_is_braked_or_zeroed(q, qd, u, gain, out, reason):
    f = SafetyFilter(limits(), brake_gain=gain)
    got, st = f.filter(u, js(q=q, qd=qd), now=0.0)
    np.testing.assert_allclose(got, out)
    assert (st.code, st.reason, st.joints, st.modified) == ("position_limit", reason, (0,), True)
    assert f.counts["position_limit"] == 1


def test_effort_beyond_a_soft_limit_may_push_inwards_or_rest():
    f = SafetyFilter(limits(), brake_gain=2.0)
    for u in ((-3.0, 0.0), (0.0, 0.0)):
        got, st = f.filter(u, js(q=(0.97, 0.0), qd=(0.5, 0.0)), now=0.0)
        np.testing.assert_allclose(got, u)
        assert st.code == "ok"


# --- the rate keeper --------------------------------------------------------------------------------
def test_rate_keeper_settings_and_its_period_boundary():
    from gps_ros.safety import RateKeeper

    with pytest.raises(ValueError, match=r"^rate_hz must be > 0, got 0$"):
        RateKeeper(0)
    t = [0.0]
    slept = []
    r = RateKeeper(0.5, clock=lambda: t[0], sleep=slept.append)    # a 2 s period is allowed
    t[0] = 2.0                                                     # exactly at the boundary
    assert r.sleep() and slept == [0.0] and r.overruns == 0
    t[0] = 6.0                                                     # exactly a period late
    assert not r.sleep() and r.overruns == 1 and r.max_lateness == pytest.approx(2.0)
    assert r._next == pytest.approx(6.0)                           # kept the schedule: 4 + 2
    t[0] = 10.5                                                    # more than a period late
    assert not r.sleep() and r._next == pytest.approx(12.5)        # re-based on now
