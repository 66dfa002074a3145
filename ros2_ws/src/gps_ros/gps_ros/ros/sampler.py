"""The sampler_node's logic without rclpy: its parameters' checks, the robot state its sensor
callbacks share with the control loop, and one trial over topics.

:mod:`gps_ros.ros.sampler_node` is the wiring (subscriptions, the action server, the reset
service, logging); what it decides is here, tested in CI without ROS
(``tests/test_sampler_loop.py``).
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from gps_ros.safety import JointStateSample

STATE_SOURCES = ("embedded_sim", "gps_state", "fk", "joint_states")
RESET_MODES = ("service", "move", "wait", "trajectory")
IMAGE_TRANSFERS = ("path", "inline")


def check_params(p: SimpleNamespace) -> None:
    """One ValueError naming the parameter for a setting the sampler cannot run with."""
    if p.state_source not in STATE_SOURCES:
        raise ValueError(f"state_source {p.state_source!r} must be one of "
                         f"{', '.join(STATE_SOURCES)}")
    if p.reset_mode not in RESET_MODES:
        raise ValueError(f"reset_mode {p.reset_mode!r} must be service, move, wait or trajectory")
    if p.reset_mode == "trajectory" and not getattr(p, "controller_manager", ""):
        raise ValueError("reset_mode trajectory needs controller_manager (the ros2_control "
                         "controller manager whose joint trajectory controller resets the arm)")
    if p.reset_mode == "service" and not p.reset_service and p.state_source != "embedded_sim":
        raise ValueError("reset_mode service needs reset_service (on a robot: reset_mode move "
                         "drives the arm to the start pose, wait leaves it to an operator)")
    if p.image_transfer not in IMAGE_TRANSFERS:
        raise ValueError(f"image_transfer {p.image_transfer!r} must be path or inline")


class RobotState:
    """The newest state of the robot, written by the sensor callbacks, read by the control loop.

    ``full_state``: q, qd -> the GPS state from a joint state (``fk``: the robot model's
    :class:`FKState`; None: ``[q, qd]``).  With ``from_joint_states`` False (``gps_state``: a
    sim_node sends the full state) joint states only update the safety watchdog's sample and a
    new state comes from :meth:`on_state`.  Every new state increments ``seq`` and wakes
    :meth:`wait`.
    """

    def __init__(self, full_state: Optional[Callable] = None,
                 from_joint_states: bool = True) -> None:
        self.full_state = full_state
        self.from_joint_states = from_joint_states
        self._cond = threading.Condition()
        self.joint_state: Optional[JointStateSample] = None
        self.x: Optional[np.ndarray] = None
        self.seq = 0
        self.image = None        # (frame through the image pipeline, stamp)
        self._stopped = False

    def on_joint_state(self, q: np.ndarray, qd: Optional[np.ndarray], stamp: float) -> None:
        js = JointStateSample(q, qd, stamp)
        with self._cond:
            self.joint_state = js
            if self.from_joint_states:
                if self.full_state is not None:
                    self.x = self.full_state(q, qd)
                else:
                    self.x = np.concatenate([q, qd if qd is not None else np.zeros_like(q)])
                self.seq += 1
                self._cond.notify_all()

    def on_state(self, x) -> None:
        with self._cond:
            self.x = np.asarray(x, dtype=np.float64)
            self.seq += 1
            self._cond.notify_all()

    def latest(self):
        """(seq, state, joint state) now."""
        with self._cond:
            return self.seq, self.x, self.joint_state

    def wait(self, after_seq: int, timeout: float):
        """(seq, state, joint state) once a state newer than ``after_seq`` arrived, the state is
        stopped or ``timeout`` s passed (then ``seq`` is still ``after_seq``)."""
        with self._cond:
            self._cond.wait_for(lambda: self.seq > after_seq or self._stopped, timeout)
            return self.seq, self.x, self.joint_state

    def stop(self) -> None:
        """Wake every :meth:`wait` now and from now on (the node is shutting down)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()


def frame_for_step(image, joint_state: Optional[JointStateSample]):
    """(frame, its age relative to the joint state) for one control step; no frame yet or no
    joint state to date it by: age inf (the safety filter holds on a stale frame)."""
    if image is None:
        return None, math.inf
    frame, stamp = image
    return frame, (joint_state.stamp - stamp) if joint_state is not None else math.inf


SHUTDOWN = "trial stopped: the sampler is shutting down"


def run_topic_trial(rec, state: RobotState, after_seq: int, next_state: Callable,
                    publish: Callable, now: Callable[[], float], stop_requested: Callable[[], bool],
                    shutting_down: Callable[[], bool], cancelled: Callable[[], bool],
                    wants_image: bool = False, feedback: Optional[Callable[[int], None]] = None,
                    feedback_every: int = 10, lockstep: bool = True) -> list:
    """One trial over topics after the reset: each step ``next_state(seq)`` (lockstep: the next
    state of the sim; free-running: the newest at the next tick), the first one newer than
    ``after_seq`` (the state's ``seq`` taken *before* the reset: in lockstep the sim's state after
    the reset is the trial's first, and no other comes before a command), the recorder's safe
    command, ``publish(u)``.  Shutdown aborts the trial with :data:`SHUTDOWN`, a cancel (the filter's
    ``cancelled()``) once the filter has stopped; ``feedback(t)`` every ``feedback_every`` steps
    and at the end.  Returns the lockstep round trips command -> next state (s)."""
    seq = after_seq
    every = max(1, int(feedback_every))
    sent, trips = None, []
    while not rec.done:
        if stop_requested() and shutting_down():
            rec.abort(SHUTDOWN)
            break
        seq, x, js = next_state(seq)
        if lockstep and sent is not None:
            trips.append(time.monotonic() - sent)
        if x is None:                    # no state yet: the filter holds on the missing joint state
            x = np.zeros(rec.dX)
        img, age = frame_for_step(state.image, js) if wants_image else (None, None)
        u, status = rec.step(x, js, now(), img, age)
        publish(u)
        sent = time.monotonic()
        if status.stopped and cancelled():
            rec.abort(status.reason)
            break
        if feedback is not None and (rec.t % every == 0 or rec.done):
            feedback(rec.t)
    return trips


def discard_severity(meta, cancelled: bool) -> Optional[str]:
    """How a finished trial's discard is logged: None (kept, or cancelled by the client: it
    knows), "error" for a robot that did not respond (the coordinator stops on it), else
    "warning"."""
    from gps_ros.ros.trial import NO_RESPONSE

    if not meta.discarded or cancelled:
        return None
    return "error" if meta.reason.startswith(NO_RESPONSE) else "warning"


def refuse_trial(msg, condition: int, reason: str):
    """Fill the Trajectory of a refused RunTrial goal: no steps, discarded, the reason (what the
    client reads from the aborted goal's result)."""
    msg.condition = max(0, min(int(condition), 2**32 - 1))
    msg.horizon = msg.dx = msg.du = 0
    msg.discarded, msg.reason = True, reason
    return msg


def trial_path(experiment_dir: str, namespace: str, condition: int) -> Path:
    """Where a sampler writes a trial: experiment_dir/trials/<namespace, / as _>/c<cond>_<ns>.npz
    (the root namespace: ``sampler``)."""
    d = Path(experiment_dir) / "trials" / (namespace.strip("/").replace("/", "_") or "sampler")
    return d / f"c{int(condition)}_{time.time_ns()}.npz"


__all__ = ["STATE_SOURCES", "RESET_MODES", "IMAGE_TRANSFERS", "SHUTDOWN", "check_params",
           "RobotState", "frame_for_step", "run_topic_trial", "discard_severity", "trial_path"]
