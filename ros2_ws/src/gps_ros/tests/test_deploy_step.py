"""The deployed policy's control step (what policy_node does with each joint state), without ROS:
enable / disable, joint order, decimation, refused messages, camera frames (none, fresh, stale),
e-stop, clamping and a non-finite command."""
from types import SimpleNamespace

import numpy as np

from gps_ros.ros.convert import Time
from gps_ros.ros.deploy import PolicyStep
from gps_ros.safety import STALE_IMAGE, SafetyFilter

from test_safety import URDF, urdf_limits

JOINTS = ("j1", "j2")          # the two-link test robot: effort limits 10, 5 N·m


class Actor:
    def __init__(self, u=(1.0, -2.0), needs_image=False):
        self.u, self.needs_image, self.calls = np.array(u, float), needs_image, []

    def act(self, t, x, noise, image=None):
        self.calls.append((x.copy(), image))
        return self.u


def joint_msg(q=(0.1, -0.2), qd=(0.0, 0.0), stamp=10.0, names=JOINTS):
    sec = int(stamp)
    return SimpleNamespace(name=list(names), position=list(q), velocity=list(qd),
                           header=SimpleNamespace(stamp=Time(sec, int(round((stamp - sec) * 1e9)))))


def make(actor=None, max_image_age=0.1, **kw):
    logs = []
    safety = SafetyFilter(urdf_limits(URDF), "effort", control_period=0.05,
                          max_image_age=max_image_age)
    step = PolicyStep(actor or Actor(), safety, JOINTS,
                      warn=lambda text, key: logs.append(("warn", key, text)),
                      error=lambda text, key: logs.append(("error", key, text)), **kw)
    return step, logs


def test_holds_until_enabled_then_acts_then_holds_again():
    actor = Actor()
    step, _ = make(actor)
    out = step.on_joint_state(joint_msg(), now=10.0)
    assert not out.acted and actor.calls == [] and np.allclose(out.command, 0.0)   # hold
    assert step.enable(True) == "enabled"
    out = step.on_joint_state(joint_msg(stamp=10.05), now=10.05)
    assert out.acted and np.allclose(out.command, actor.u) and not out.status.stopped
    np.testing.assert_allclose(actor.calls[-1][0], [0.1, -0.2, 0.0, 0.0])        # x = [q, q̇]
    assert step.enable(False) == "holding"
    out = step.on_joint_state(joint_msg(stamp=10.1), now=10.1)
    assert not out.acted and np.allclose(out.command, 0.0) and len(actor.calls) == 1


def test_joints_are_taken_by_name_and_a_message_without_them_is_refused():
    actor = Actor()
    step, logs = make(actor, enabled=True)
    msg = joint_msg(q=(7.0, 0.3, -0.4), qd=(9.0, 0.5, 0.6), names=("other", "j2", "j1"))
    step.on_joint_state(msg, now=10.0)
    np.testing.assert_allclose(actor.calls[-1][0], [-0.4, 0.3, 0.6, 0.5])
    assert step.on_joint_state(joint_msg(q=(0.1,), qd=(0.0,), names=("j1",)), now=10.0) is None
    assert logs[-1][:2] == ("error", "joint_states") and "j2" in logs[-1][2]
    assert len(actor.calls) == 1


def test_missing_velocities_are_zero_and_decimation_skips_messages():
    actor = Actor()
    step, _ = make(actor, enabled=True, decimation=3)
    outs = [step.on_joint_state(joint_msg(qd=(), stamp=10 + 0.01 * i), now=10 + 0.01 * i)
            for i in range(7)]
    assert [o is not None for o in outs] == [False, False, True, False, False, True, False]
    np.testing.assert_allclose(actor.calls[0][0][2:], 0.0)


def test_commands_are_clamped_and_a_non_finite_one_is_a_hold():
    step, _ = make(Actor(u=(50.0, -50.0)), enabled=True)
    out = step.on_joint_state(joint_msg(), now=10.0)
    np.testing.assert_allclose(out.command, [10.0, -5.0])                 # the URDF's efforts
    step, _ = make(Actor(u=(np.nan, 0.0)), enabled=True)
    out = step.on_joint_state(joint_msg(), now=10.0)
    assert out.status.stopped and np.allclose(out.command, 0.0)


def test_e_stop_holds_an_enabled_policy_until_reset():
    actor = Actor()
    step, _ = make(actor, enabled=True)
    step.safety.e_stop("test")
    out = step.on_joint_state(joint_msg(), now=10.0)
    assert out.status.stopped and np.allclose(out.command, 0.0)
    step.safety.reset_e_stop()
    step.enable(True)
    out = step.on_joint_state(joint_msg(stamp=10.05), now=10.05)
    assert not out.status.stopped and np.allclose(out.command, actor.u)


def test_a_vision_policy_never_acts_blind_or_on_a_stale_frame():
    actor = Actor(needs_image=True)
    step, logs = make(actor, enabled=True, max_image_age=0.1)
    out = step.on_joint_state(joint_msg(stamp=10.0), now=10.0)          # no frame yet
    assert not out.acted and np.allclose(out.command, 0.0) and actor.calls == []
    assert logs[-1][:2] == ("warn", "no_frames")
    frame = np.full((3, 4, 3), 7, np.uint8)
    step.on_frame(frame, 10.02)
    out = step.on_joint_state(joint_msg(stamp=10.05), now=10.05)        # 30 ms old: acts
    assert out.acted and actor.calls[-1][1] is frame and np.allclose(out.command, actor.u)
    out = step.on_joint_state(joint_msg(stamp=10.3), now=10.3)          # 280 ms old: holds
    assert not out.acted and out.status.code == STALE_IMAGE and np.allclose(out.command, 0.0)
    # counted: the step without any frame and this one
    assert step.stale_frames == 2 and logs[-1][:2] == ("warn", "stale")
    step.on_frame(frame, 10.34)
    out = step.on_joint_state(joint_msg(stamp=10.35), now=10.35)        # fresh again: acts
    assert out.acted and len(actor.calls) == 2


def test_a_message_without_a_stamp_uses_the_receive_time():
    actor = Actor()
    step, _ = make(actor, enabled=True)
    out = step.on_joint_state(joint_msg(stamp=0.0), now=10.0)
    assert out.acted and not out.status.stopped          # not stale: stamped at 10.0 on receipt
