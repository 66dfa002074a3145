"""The sampler_node's logic without ROS (gps_ros.ros.sampler): a trial over topics against a
two-joint robot in velocity mode whose answer is known in closed form, its stops, its image
dating, the shared robot state and the parameter checks."""
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from gps_ros.ros.sampler import (SHUTDOWN, RobotState, check_params, discard_severity,
                                 frame_for_step, run_topic_trial, trial_path)
from gps_ros.ros.trial import NO_RESPONSE, TrialRecorder
from gps_ros.safety import JointStateSample, SafetyFilter, SafetyLimits
from gps_ros.sample import TrialMeta

DT = 0.05
TARGET = np.array([0.5, -0.3])
GAIN = 4.0
LIMITS = SafetyLimits(("a", "b"), [-3.0, -3.0], [3.0, 3.0], [1.0, 1.0], [10.0, 10.0])


class PController:
    """u = -GAIN (q - TARGET) + noise: commands up to 2.4 rad/s, clamped by the filter to 1."""

    def act(self, t, x, noise=None):
        return -GAIN * (x[:2] - TARGET) + noise


class VelocityRobot:
    """Lockstep integrator: a command u moves q by u DT and sends the next joint state at once."""

    def __init__(self, state: RobotState, q0=(0.0, 0.0)):
        self.state, self.clock = state, 0.0
        self.q = np.array(q0, dtype=float)
        self.sent = []
        self.state.on_joint_state(self.q.copy(), np.zeros(2), self.clock)

    def publish(self, u):
        self.sent.append(None if u is None else np.array(u))
        if u is None:
            return
        self.q = self.q + DT * u
        self.clock += DT
        self.state.on_joint_state(self.q.copy(), np.array(u, dtype=float), self.clock)

    def now(self):
        return self.clock


def reference(q0, T):
    """States and commands of the same loop in closed form: q' = q + DT clip(-GAIN (q - TARGET))."""
    q, qd, X, U = np.array(q0, float), np.zeros(2), [], []
    for _ in range(T):
        X.append(np.r_[q, qd])
        u = np.clip(-GAIN * (q - TARGET), -1.0, 1.0)
        U.append(u)
        q, qd = q + DT * u, u
    return np.array(X), np.array(U)


def recorder(T, noise=None, actor=None, filt=None):
    filt = filt or SafetyFilter(LIMITS, mode="velocity", control_period=DT)
    noise = np.zeros((T, 2)) if noise is None else noise
    return TrialRecorder(actor or PController(), 0, T, 4, 2, noise, filt)


def run(rec, state, robot, after_seq=0, **kw):
    """The trial after the robot's reset state arrived (seq 0: the state's before the robot
    sent anything, as the sampler takes it before resetting)."""
    kw.setdefault("stop_requested", lambda: False)
    kw.setdefault("shutting_down", lambda: False)
    kw.setdefault("cancelled", lambda: rec.safety.cancelled)
    return run_topic_trial(rec, state, after_seq, lambda seq: state.wait(seq, 0.2), robot.publish,
                           robot.now, **kw)


def test_lockstep_trial_records_what_the_robot_did_and_matches_the_closed_form():
    T = 30
    state = RobotState()
    robot = VelocityRobot(state)
    rec = recorder(T)
    steps = []
    trips = run(rec, state, robot, feedback=steps.append, feedback_every=7)
    X, U = reference((0.0, 0.0), T)
    np.testing.assert_allclose(rec.X, X, atol=1e-12)
    np.testing.assert_allclose(rec.U, U, atol=1e-12)          # the clamped command, as sent
    np.testing.assert_allclose(np.stack(robot.sent), U, atol=1e-12)
    assert not rec.meta.discarded and rec.done
    # a broken loop that drops the filter sends 2 rad/s; one that skips a state repeats X rows
    assert np.abs(rec.U).max() == pytest.approx(1.0)
    assert np.all(np.abs(np.diff(rec.X[:, 0])) > 0)
    np.testing.assert_allclose(robot.q, TARGET, atol=0.05)    # and it got there
    assert steps == [7, 14, 21, 28, 30]                        # every 7 steps and the last
    assert len(trips) == T - 1 and all(0 <= s < 1.0 for s in trips)
    assert np.all(np.diff(rec.stamps) == pytest.approx(DT))


def test_the_state_after_the_reset_is_the_first_without_waiting():
    """In lockstep the sim sends its reset state once and nothing more until a command: the loop
    must start from the seq taken before the reset.  Taken after it (the regression this
    catches) the first step waits out the lockstep timeout and holds on a stale joint state."""
    state = RobotState()
    before = state.latest()[0]
    robot = VelocityRobot(state)                               # the reset: one new state
    rec = recorder(5)
    waits = []

    def timed(seq):
        t0 = time.monotonic()
        out = state.wait(seq, 0.5)
        waits.append(time.monotonic() - t0)
        return out

    run_topic_trial(rec, state, before, timed, robot.publish, robot.now,
                    stop_requested=lambda: False, shutting_down=lambda: False,
                    cancelled=lambda: False)
    assert max(waits) < 0.25 and not rec.meta.discarded
    np.testing.assert_array_equal(rec.X[0], np.zeros(4))       # the reset state


def test_free_running_measures_no_round_trips():
    state = RobotState()
    robot = VelocityRobot(state)
    rec = recorder(5)
    assert run(rec, state, robot, lockstep=False) == []
    assert rec.done and not rec.meta.discarded


def test_shutdown_aborts_the_trial_and_holds_the_rest():
    T = 20
    state = RobotState()
    robot = VelocityRobot(state)
    rec = recorder(T)
    stop = lambda: rec.t >= 6                                  # noqa: E731
    run(rec, state, robot, stop_requested=stop, shutting_down=stop)
    assert rec.meta.discarded and rec.meta.reason == SHUTDOWN
    assert len(robot.sent) == 6 and rec.done
    assert np.all(rec.U[6:] == 0.0)                            # velocity hold
    assert np.all(rec.X[6:] == rec.X[5])


def test_a_stop_request_without_shutdown_is_not_an_abort():
    """stop_requested is polled every step (it latches a client's cancel in the filter); only the
    shutdown aborts at once: a request that is neither lets the trial run on."""
    T = 10
    state = RobotState()
    robot = VelocityRobot(state)
    rec = recorder(T)
    polls = []
    run(rec, state, robot, stop_requested=lambda: polls.append(rec.t) or True)
    assert polls == list(range(T)) and not rec.meta.discarded


def test_a_cancel_holds_from_the_next_command_and_ends_the_trial():
    T = 20
    state = RobotState()
    robot = VelocityRobot(state)
    rec = recorder(T)

    def cancel_at_4():
        if rec.t == 4:
            rec.safety.cancel("trial cancelled by the client")
        return rec.t >= 4

    run(rec, state, robot, stop_requested=cancel_at_4)
    assert rec.meta.discarded and "cancelled by the client" in rec.meta.reason
    assert len(robot.sent) == 5                                # 4 commands and the hold
    np.testing.assert_array_equal(robot.sent[-1], np.zeros(2))
    assert rec.done


def test_no_state_at_all_holds_and_discards():
    """A robot that never sends a state: each step times out, the state is zeros, the missing
    joint state stops the filter -> held and discarded, never a command."""
    T = 4
    state = RobotState()
    rec = recorder(T)
    sent = []
    run_topic_trial(rec, state, 0, lambda seq: state.wait(seq, 0.01), sent.append, lambda: 0.0,
                    stop_requested=lambda: False, shutting_down=lambda: False,
                    cancelled=lambda: False)
    assert rec.meta.discarded and "t=0" in rec.meta.reason
    assert np.all(rec.X == 0.0) and all(np.all(u == 0.0) for u in sent) and len(sent) == T


class ImageActor(PController):
    needs_image = True

    def __init__(self):
        self.frames = []

    def act(self, t, x, noise=None, image=None):
        self.frames.append(image)
        return super().act(t, x, noise)


@pytest.mark.parametrize("frame_age, held", [(0.02, False), (0.5, True)])
def test_frames_are_dated_against_the_joint_state(frame_age, held):
    state = RobotState()
    robot = VelocityRobot(state)
    frame = np.full((4, 4, 3), 7, np.uint8)
    state.image = (frame, -frame_age)                          # stamped before the first state
    actor = ImageActor()
    filt = SafetyFilter(LIMITS, mode="velocity", control_period=DT, max_image_age=0.3)
    rec = recorder(3, actor=actor, filt=filt)
    run(rec, state, robot, wants_image=True)
    assert actor.frames[0] is frame
    assert rec.meta.discarded == held
    if held:
        assert "frame is 500 ms older than the joint state" in rec.meta.reason
        assert len(actor.frames) == 1                          # held from then on


def test_frame_for_step():
    js = JointStateSample(np.zeros(2), None, 10.0)
    f = np.zeros((2, 2))
    assert frame_for_step(None, js) == (None, math.inf)
    got, age = frame_for_step((f, 9.75), js)
    assert got is f and age == pytest.approx(0.25)
    assert frame_for_step((f, 9.75), None)[1] == math.inf


def test_robot_state_sources():
    calls = []
    s = RobotState(lambda q, qd: calls.append((q, qd)) or np.r_[q, 2 * q])
    s.on_joint_state(np.array([1.0]), None, 3.0)
    seq, x, js = s.latest()
    assert seq == 1 and js.stamp == 3.0 and js.velocity is None
    assert calls[0][1] is None                                # fk gets the missing velocity
    np.testing.assert_array_equal(x, [1.0, 2.0])
    s2 = RobotState()
    s2.on_joint_state(np.array([1.0, 2.0]), None, 0.0)
    np.testing.assert_array_equal(s2.x, [1.0, 2.0, 0.0, 0.0])      # no velocities: zeros
    s2.on_joint_state(np.array([1.0, 2.0]), np.array([3.0, 4.0]), 0.0)
    np.testing.assert_array_equal(s2.x, [1.0, 2.0, 3.0, 4.0])
    assert s2.seq == 2
    # gps_state: the sim sends the state; joint states only feed the watchdog
    s3 = RobotState(from_joint_states=False)
    s3.on_joint_state(np.array([1.0]), np.array([0.0]), 5.0)
    assert s3.seq == 0 and s3.x is None and s3.joint_state.stamp == 5.0
    s3.on_state([1, 2, 3])
    assert s3.seq == 1 and s3.x.dtype == np.float64
    np.testing.assert_array_equal(s3.x, [1.0, 2.0, 3.0])


def test_robot_state_fk_is_applied():
    s = RobotState(lambda q, qd: np.r_[q, qd, 2 * q])
    s.on_joint_state(np.array([1.5]), np.array([0.5]), 0.0)
    np.testing.assert_array_equal(s.x, [1.5, 0.5, 3.0])


def test_wait_times_out_wakes_on_a_state_and_on_stop():
    s = RobotState()
    t0 = time.monotonic()
    assert s.wait(0, 0.05)[0] == 0
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, lambda: s.on_joint_state(np.zeros(1), None, 1.0)).start()
    t0 = time.monotonic()
    assert s.wait(0, 5.0)[0] == 1 and time.monotonic() - t0 < 2.0
    threading.Timer(0.05, s.stop).start()
    t0 = time.monotonic()
    assert s.wait(1, 5.0)[0] == 1 and time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    s.wait(1, 5.0)                                             # stopped: no wait at all
    assert time.monotonic() - t0 < 0.5


def params(**over):
    p = dict(state_source="gps_state", reset_mode="service", reset_service="reset",
             image_transfer="path")
    p.update(over)
    return SimpleNamespace(**p)


@pytest.mark.parametrize("over, match", [
    (dict(state_source="tf"), "state_source 'tf' must be one of embedded_sim, gps_state"),
    (dict(reset_mode="manual"), "reset_mode 'manual' must be service, move, wait or trajectory"),
    (dict(reset_mode="trajectory"), "reset_mode trajectory needs controller_manager"),
    (dict(reset_service=""), "reset_mode service needs reset_service"),
    (dict(state_source="fk", reset_service=""), "reset_mode service needs reset_service"),
    (dict(image_transfer="shm"), "image_transfer 'shm' must be path or inline"),
])
def test_check_params_names_the_bad_parameter(over, match):
    with pytest.raises(ValueError, match=match):
        check_params(params(**over))


@pytest.mark.parametrize("over", [{}, dict(state_source="embedded_sim", reset_service=""),
                                  dict(reset_mode="move", reset_service=""),
                                  dict(reset_mode="wait", state_source="joint_states"),
                                  dict(image_transfer="inline"),
                                  dict(reset_mode="trajectory", controller_manager="/cm")])
def test_check_params_accepts_working_settings(over):
    check_params(params(**over))


def test_discard_severity():
    kept = TrialMeta(condition=0)
    dead = TrialMeta(condition=0, discarded=True, reason=f"{NO_RESPONSE}: moved 0 rad")
    limit = TrialMeta(condition=0, discarded=True, reason="t=3: joint 2 beyond its limit")
    assert discard_severity(kept, False) is None
    assert discard_severity(dead, False) == "error"
    assert discard_severity(limit, False) == "warning"
    assert discard_severity(limit, True) is None and discard_severity(dead, True) is None


def test_trial_path(tmp_path):
    p = trial_path(str(tmp_path), "/lab/arm_1", 3)
    assert p.parent == tmp_path / "trials" / "lab_arm_1" and p.name.startswith("c3_")
    assert p.suffix == ".npz"
    assert trial_path(str(tmp_path), "/", 0).parent.name == "sampler"
