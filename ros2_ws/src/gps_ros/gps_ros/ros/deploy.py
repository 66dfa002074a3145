"""The deployed policy's control step, without rclpy: what ``policy_node`` does with each joint
state (and each camera frame), so that it runs in CI; the node is its ROS wiring.

Per joint state (every ``decimation``-th): the joints in the robot's order, the policy's command
when it is enabled and has what it needs (a fresh enough frame for a vision policy), else a hold;
every command through the :class:`gps_ros.safety.SafetyFilter`.  A vision policy never acts blind:
without a frame, or with one older than the filter's ``max_image_age``, it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from gps_ros.ros import convert
from gps_ros.safety import STALE_IMAGE, JointStateSample, SafetyFilter, SafetyStatus


@dataclass
class StepOutcome:
    """One control step: the command to send (None: nothing, a position-mode hold before any
    joint state), the filter's status, and whether the policy itself ran."""
    command: Optional[np.ndarray]
    status: Optional[SafetyStatus]
    acted: bool


class PolicyStep:
    """The policy node's control loop body.

    Args:
        actor: ``act(t, x, noise, image=None)`` on x = [q, q̇]; ``needs_image`` for a vision policy.
        safety: the filter every command passes.
        joints: the controlled joints, in the policy's order.
        decimation: act on every n-th joint state (the others are ignored).
        enabled: start enabled (else holding until :meth:`enable`).

        warn: ``warn(text, key)`` for rate-limited warnings (the node throttles them per key);
            ``error`` likewise for refused messages.
    """

    def __init__(self, actor, safety: SafetyFilter, joints, decimation: int = 1,
                 enabled: bool = False, warn: Callable[[str, str], None] = lambda text, key: None,
                 error: Callable[[str, str], None] = lambda text, key: None) -> None:
        self.actor, self.safety = actor, safety
        self.order = convert.JointOrder(list(joints))
        self.n = len(self.order.names)
        self.decimation = max(1, int(decimation))
        self.warn, self.error = warn, error
        self.count = 0
        self.stale_frames = 0
        self.frame = None                 # (frame through the pipeline, stamp in s)
        self.enabled = False
        if enabled:
            self.enable(True)

    def enable(self, on: bool) -> str:
        """Start (True: a new 'trial' for the filter) or stop (hold) the policy."""
        self.enabled = bool(on)
        if self.enabled:
            self.safety.begin_trial()
        else:
            self.safety.cancel("policy disabled")
        return "enabled" if self.enabled else "holding"

    def on_frame(self, image: np.ndarray, stamp: float) -> None:
        self.frame = (image, float(stamp))

    def on_joint_state(self, msg, now: float) -> Optional[StepOutcome]:
        """One JointState-like message (``name``, ``position``, ``velocity``, ``header.stamp``);
        None when decimated away or refused (its joints or sizes do not match: logged)."""
        self.count += 1
        if self.count % self.decimation:
            return None
        try:
            q, qd = self.order.extract(msg)
        except convert.ShapeError as err:
            self.error(str(err), "joint_states")
            return None
        if qd is None:
            qd = np.zeros_like(q)
        stamp = convert.time_to_seconds(msg.header.stamp) or now
        return self.step(JointStateSample(q, qd, stamp), now)

    def step(self, js: JointStateSample, now: float) -> StepOutcome:
        if not self.enabled:
            self.safety.cancel("policy not enabled")
        image, age = (self.frame or (None, None))[0], None
        if getattr(self.actor, "needs_image", False):
            age = js.stamp - self.frame[1] if image is not None else math.inf
        acted = self.enabled and (age is None or age <= self.safety.max_image_age)
        if acted:
            raw = self.actor.act(0, np.concatenate([js.position, js.velocity]), None, image=image)
        else:
            # the filter holds (disabled / no or stale frame): no network pass for nothing
            raw = np.zeros(self.n)
            if self.enabled and image is None:
                self.warn("no camera frames: holding (a vision policy never acts blind)", "no_frames")
        u, status = self.safety.filter(raw, js, now, age)
        if status.code == STALE_IMAGE and self.enabled:
            self.stale_frames += 1
            if image is not None:
                self.warn(f"{status.reason}: holding ({self.stale_frames} stale so far)", "stale")
        elif status.stopped and status.code != "cancelled" and image is not None:
            self.warn(status.reason, "stopped")
        return StepOutcome(u, status, acted)
