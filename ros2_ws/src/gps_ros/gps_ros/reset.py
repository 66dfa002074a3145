"""Automatic reset of a real arm between trials: a smooth joint-space move to the condition's start
pose, executed through the robot's own command interface and the same safety filter as a trial
(no ROS here; ``sampler_node`` feeds it joint states and publishes what it returns).

* :func:`min_jerk` — the minimum-jerk profile q(s) = q0 + (q1 - q0)(10 s³ - 15 s⁴ + 6 s⁵), s = t / T:
  zero velocity and acceleration at both ends; peak speed 1.875 ``|Δq|`` / T, peak acceleration
  5.774 ``|Δq|`` / T² (:func:`move_duration` picks the shortest T within given limits).
* :class:`JointMove` — tracks the profile and then holds the goal until every joint is within
  ``position_tolerance`` of it and slower than ``velocity_tolerance``:

  - effort interface (the robot adds gravity compensation, as franka_ros2's effort controllers
    and the simulated arms do): u = M(q) (q̈_ref + K_p (q_ref − q) + K_d (q̇_ref − q̇)) + b q̇_ref
    (b: known viscous friction, feedforward), gains in
    acceleration units ((rad/s²)/rad, 1/s) so that they do not depend on the robot; M(q) from the
    robot model (PyBullet's mass matrix of its URDF) or a diagonal guess;
  - velocity interface: u = q̇_ref + K_v (q_ref − q);
  - position interface (ros2_control forward_position_controller): u = q_ref, the profile's
    position itself (the robot's position controller tracks it); the safety filter's per-step
    displacement limit keeps it within ``max_step`` of the measured position.

  Every command passes :meth:`gps_ros.safety.SafetyFilter.filter`; a stop (e-stop, stale joint
  state, cancel, non-finite values) ends the move as failed with the filter's reason, as does not
  reaching the tolerance ``settle_timeout`` seconds after the profile ends.

In position mode the filter's hold command is None until it has seen a finite joint position
(there is no safe target yet): :meth:`JointMove.step` then returns None as the command, and
:func:`run_move` sends nothing for that period (``send`` is only ever called with an array).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from gps_ros.safety import JointStateSample, SafetyFilter

#: peak ``|velocity|`` and ``|acceleration|`` of the minimum-jerk profile per unit distance, unit time
MIN_JERK_PEAK_VELOCITY = 1.875
MIN_JERK_PEAK_ACCELERATION = 10.0 / np.sqrt(3.0)


def min_jerk(q0, q1, duration: float, t: float):
    """(q, q̇, q̈) of the minimum-jerk move from ``q0`` to ``q1`` in ``duration`` s at time ``t``
    (clamped to [0, duration]: at rest at both ends)."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    d = q1 - q0
    if duration <= 0 or t >= duration:
        return q1.copy(), np.zeros_like(d), np.zeros_like(d)
    s = max(0.0, float(t)) / duration
    pos = 10 * s**3 - 15 * s**4 + 6 * s**5
    vel = (30 * s**2 - 60 * s**3 + 30 * s**4) / duration
    acc = (60 * s - 180 * s**2 + 120 * s**3) / duration**2
    return q0 + d * pos, d * vel, d * acc


def move_duration(q0, q1, max_velocity, max_acceleration, min_duration: float = 0.5) -> float:
    """The shortest minimum-jerk duration that keeps every joint within its velocity and
    acceleration limits (scalars or per joint), at least ``min_duration``."""
    d = np.abs(np.asarray(q1, dtype=np.float64) - np.asarray(q0, dtype=np.float64))
    v = np.broadcast_to(np.asarray(max_velocity, dtype=np.float64), d.shape)
    a = np.broadcast_to(np.asarray(max_acceleration, dtype=np.float64), d.shape)
    if not (np.all(v > 0) and np.all(a > 0)):
        raise ValueError("max_velocity and max_acceleration must be > 0")
    t_v = MIN_JERK_PEAK_VELOCITY * d / v
    t_a = np.sqrt(MIN_JERK_PEAK_ACCELERATION * d / a)
    return float(max(min_duration, t_v.max(initial=0.0), t_a.max(initial=0.0)))


@dataclass
class ResetSettings:
    """How a reset move runs (the sampler_node's ``reset_*`` parameters).

    Attributes:
        max_velocity: rad/s per joint of the profile's peak (the sampler uses a fraction of the
            URDF velocity limits).

        max_acceleration: rad/s² of the profile's peak.
        stiffness, damping: effort mode PD gains in acceleration units ((rad/s²)/rad and 1/s).

        velocity_gain: velocity mode position gain (1/s).  (Position mode has no gains: the
            command is the profile's position.)
        viscous_friction: N m s/rad; effort mode feedforward ``b q̇_ref`` for a joint's known
            viscous friction (the simulated arm's ``agent.joint_damping``; 0 on a robot whose
            driver compensates friction).

        position_tolerance: rad; done when every joint is this close to the goal ...
        velocity_tolerance: rad/s; ... and slower than this.
        settle_timeout: s after the profile ends to get within tolerance, else the move fails.
        min_duration: s, the shortest profile.
    """

    max_velocity: object = 0.5
    max_acceleration: float = 1.0
    stiffness: float = 40.0
    damping: float = 12.0
    velocity_gain: float = 2.0
    viscous_friction: float = 0.0
    position_tolerance: float = 0.01
    velocity_tolerance: float = 0.02
    settle_timeout: float = 5.0
    min_duration: float = 0.5


@dataclass
class MoveStatus:
    """The state of a move after one step: ``done`` (within tolerance), ``failed`` (with the
    reason) or neither (running)."""

    done: bool = False
    failed: bool = False
    reason: str = ""
    elapsed: float = 0.0
    position_error: float = float("nan")   # max |q - goal| (rad)
    velocity: float = float("nan")         # max |q̇| (rad/s)


class JointMove:
    """One reset move to ``goal`` (joint positions in the filter's joint order).

    ``step(joint_state, now)`` returns (command, :class:`MoveStatus`); the profile starts at the
    first joint state seen.  ``mass_matrix(q) -> (n, n)`` for the effort interface (else a
    diagonal of ``inertia``).  The command interface is the safety filter's ``mode`` (effort,
    velocity or position); in position mode the command is None where the filter's hold is None
    (no finite joint position seen yet): send nothing then.
    """

    def __init__(self, goal, safety: SafetyFilter, settings: Optional[ResetSettings] = None,
                 mass_matrix: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 inertia=1.0) -> None:
        self.goal = np.asarray(goal, dtype=np.float64)
        if self.goal.shape != (safety.n,) or not np.isfinite(self.goal).all():
            raise ValueError(f"reset goal must be {safety.n} finite joint positions, got {goal!r}")
        out = (self.goal < safety.soft_lower) | (self.goal > safety.soft_upper)
        if out.any():
            names = [safety.limits.names[i] for i in np.flatnonzero(out)]
            raise ValueError(f"reset goal is outside the soft position limits on {names}")
        self.safety = safety
        self.s = settings or ResetSettings()
        self.mass_matrix = mass_matrix
        self.inertia = np.broadcast_to(np.asarray(inertia, dtype=np.float64), self.goal.shape)
        self.start: Optional[np.ndarray] = None
        self.t0 = 0.0
        self.duration = 0.0
        self.status = MoveStatus()

    def _begin(self, q: np.ndarray, now: float) -> None:
        self.start = q.copy()
        self.t0 = now
        self.duration = move_duration(q, self.goal, self.s.max_velocity, self.s.max_acceleration,
                                      self.s.min_duration)

    def command(self, q: np.ndarray, qd: np.ndarray, t: float) -> np.ndarray:
        """The unfiltered command ``t`` s into the move (position mode: the reference position)."""
        q_ref, qd_ref, qdd_ref = min_jerk(self.start, self.goal, self.duration, t)
        if self.safety.mode == "position":
            return q_ref
        if self.safety.mode == "velocity":
            return qd_ref + self.s.velocity_gain * (q_ref - q)
        acc = qdd_ref + self.s.stiffness * (q_ref - q) + self.s.damping * (qd_ref - qd)
        ff = self.s.viscous_friction * qd_ref
        if self.mass_matrix is not None:
            return self.mass_matrix(q) @ acc + ff
        return self.inertia * acc + ff

    def step(self, joint_state: Optional[JointStateSample], now: float):
        """(command or None, :class:`MoveStatus`) for the newest ``joint_state`` at ``now`` (s).

        Once done or failed the command is the filter's hold.  None only in position mode, where
        the filter has no finite joint position to hold at: publish nothing for this period.
        """
        st = self.status
        if st.done or st.failed:
            return self.safety.hold(joint_state), st
        if joint_state is None or joint_state.position is None:
            u, fs = self.safety.filter(np.zeros(self.safety.n), joint_state, now)
            return u, self._fail(fs.reason or "no joint state")
        q = np.asarray(joint_state.position, dtype=np.float64)
        qd = (np.zeros_like(q) if joint_state.velocity is None
              else np.asarray(joint_state.velocity, dtype=np.float64))
        if self.start is None:
            if not np.isfinite(q).all():
                u, fs = self.safety.filter(np.zeros(self.safety.n), joint_state, now)
                return u, self._fail(fs.reason)
            self._begin(q, now)
        t = now - self.t0
        st.elapsed = t
        st.position_error = float(np.abs(q - self.goal).max())
        st.velocity = float(np.abs(qd).max())
        if (t >= self.duration and st.position_error <= self.s.position_tolerance
                and st.velocity <= self.s.velocity_tolerance):
            st.done = True
            return self.safety.hold(joint_state), st
        u, fs = self.safety.filter(self.command(q, qd, t), joint_state, now)
        if fs.stopped:
            return u, self._fail(fs.reason)
        if t > self.duration + self.s.settle_timeout:
            j = int(np.argmax(np.abs(q - self.goal)))
            return self.safety.hold(joint_state), self._fail(
                f"start pose not reached {t:.1f} s into the reset (tolerance "
                f"{self.s.position_tolerance:g} rad, {self.s.velocity_tolerance:g} rad/s): "
                f"{self.safety.limits.names[j]} is {q[j] - self.goal[j]:+.3f} rad off, joints "
                f"moving up to {st.velocity:.3f} rad/s")
        return u, st

    def _fail(self, reason: str) -> MoveStatus:
        self.status.failed = True
        self.status.reason = reason
        return self.status


def start_pose(agent_cfg, condition: int) -> np.ndarray:
    """The start joint positions of ``condition`` in an experiment config's ``agent`` section."""
    conds = agent_cfg.conditions
    if not 0 <= condition < len(conds):
        raise IndexError(f"condition {condition} out of range (the config has {len(conds)})")
    q = conds[condition].start_joint_positions or agent_cfg.start_joint_positions
    return np.asarray(q, dtype=np.float64)


def run_move(move: JointMove, read_state: Callable[[], Optional[JointStateSample]],
             send: Callable[[np.ndarray], None], wait: Callable[[], None],
             clock: Callable[[], float], should_stop: Callable[[], bool] = lambda: False) -> MoveStatus:
    """Run ``move`` to the end: each period ``wait()``, read the newest joint state, ``send`` the
    filtered command.  ``should_stop()`` (shutdown) fails the move (after sending the hold).

    ``send`` is only ever called with an (n,) array: a None command (position mode, no finite
    joint position seen yet) is not sent.
    """
    while True:
        wait()
        if should_stop():
            u = move.safety.hold(read_state())
            if u is not None:
                send(u)
            return move._fail("reset stopped: shutting down or cancelled")
        js = read_state()
        u, st = move.step(js, clock())
        if u is not None:
            send(u)
        if st.done or st.failed:
            return st
