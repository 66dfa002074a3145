"""The one safety filter every command passes through (pure Python, no ROS).

DESIGN.md "Safety": clamp to the URDF's effort / velocity / position limits, refuse NaN, stop (hold /
zero effort) when joint states are older than a few control periods, on an e-stop, or when the trial
is cancelled.  Every stop condition reports a reason string.

Three command interfaces (``SafetyFilter(mode=...)``), as ros2_control's forward command
controllers take them: ``"effort"`` (joint torques / forces), ``"velocity"`` (joint velocities) and
``"position"`` (absolute joint position targets, e.g. forward_position_controller).

* :class:`SafetyLimits` — per-joint position / velocity / effort limits (a robot's, from its
  URDF: :meth:`gps_ros.robot.RobotDescription.limits`).
* :class:`SafetyFilter` — ``filter(command, joint_state, now) -> (command, SafetyStatus)``.
* :class:`RateKeeper` — fixed-rate loop timing on a monotonic clock, counting overruns.

The priority of the checks, first match wins: e-stop (latched until :meth:`SafetyFilter.reset_e_stop`)
> cancelled > no joint state > stale joint state > non-finite joint state > stale (or missing) camera
frame, for commands computed from one (``image_age``, against ``max_image_age``) > non-finite
command; a
command that passes them all is clamped to the effort (``mode="effort"``) or velocity
(``mode="velocity"``) limits, and any joint beyond its *soft* position limit (the URDF limit minus
``position_margin``) that the command would push further out is zeroed (effort mode: replaced by a
braking torque ``-brake_gain * qdot`` when moving outwards).

Position mode (``mode="position"``): a command is a vector of absolute joint position targets u.
The same stop checks apply, in the same order.  A command that passes them is clamped per joint,
against the measured position q of the joint state, to

* the soft position limits ``[lower + position_margin, upper - position_margin]`` — except that a
  joint already outside them may be commanded back towards the inside (or to stay at q) but never
  further out (``POSITION_LIMIT``; the target is held at q, the counterpart of the zeroed outward
  command of the other modes);
* a per-step displacement limit ``|u - q| <= max_step``, with ``max_step = velocity limit *
  velocity_scale * control_period`` unless the ``max_step`` argument (rad, scalar or per joint)
  overrides it — the target never runs further ahead of the arm than the URDF velocity limit lets
  it travel in one control period.

A target moved by either clamp reports ``CLAMPED`` (the reason names each joint and which limit).
``effort_scale``, ``hold_damping`` and ``brake_gain`` do not apply in position mode.

"Hold" is the command that keeps the arm where it is without any learned input: zero velocity in
velocity mode; in effort mode zero effort (ros2_control effort interfaces of arms like the Franka
add gravity compensation themselves) plus optional damping ``-hold_damping * qdot``; in position
mode the most recent finite joint positions the filter has been given (every
:meth:`SafetyFilter.filter` / :meth:`SafetyFilter.hold` call whose joint state has finite positions
of the right shape updates them, stale or not: a frozen joint state still carries the last
measured pose).  Before the filter has seen any finite position there is nothing safe to command
in position mode: the hold command is ``None`` (from ``hold()``, and as the command of a stop from
``filter()``), and the caller must then publish nothing (a forward position controller keeps its
last target when nothing arrives).  Effort and velocity holds are never ``None``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

# status codes (SafetyStatus.code); the stop codes make the sampler hold and discard the trial
OK = "ok"
CLAMPED = "clamped"
POSITION_LIMIT = "position_limit"
NONFINITE_COMMAND = "nonfinite_command"
NONFINITE_STATE = "nonfinite_state"
NO_STATE = "no_state"
STALE_STATE = "stale_state"
STALE_IMAGE = "stale_image"
E_STOP = "e_stop"
CANCELLED = "cancelled"
STOP_CODES = frozenset({NONFINITE_COMMAND, NONFINITE_STATE, NO_STATE, STALE_STATE, STALE_IMAGE,
                        E_STOP, CANCELLED})

class SafetyError(ValueError):
    """Bad limits or a command of the wrong shape (a programming / configuration error)."""


# --- limits ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafetyLimits:
    """Per-joint limits, in joint order.

    Attributes:
        names: joint names (as in sensor_msgs/JointState.name).
        lower, upper: position limits (rad or m); ``-inf`` / ``inf`` for continuous joints.
        velocity: velocity limits (> 0).
        effort: effort limits (> 0).
    """

    names: Tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        for k in ("lower", "upper", "velocity", "effort"):
            a = np.asarray(getattr(self, k), dtype=np.float64).reshape(-1)
            if a.shape != (n,):
                raise SafetyError(f"SafetyLimits.{k} has {a.size} values for {n} joints")
            a.setflags(write=False)
            object.__setattr__(self, k, a)
        object.__setattr__(self, "names", tuple(self.names))
        if np.any(np.isnan(self.lower)) or np.any(np.isnan(self.upper)) or np.any(self.lower > self.upper):
            raise SafetyError(f"SafetyLimits: lower {self.lower} must be <= upper {self.upper}")
        for k in ("velocity", "effort"):
            a = getattr(self, k)
            if not (np.all(np.isfinite(a)) and np.all(a > 0)):
                raise SafetyError(f"SafetyLimits.{k} must be finite and > 0, got {a}")

    @property
    def n(self) -> int:
        return len(self.names)

    def scaled(self, velocity: float = 1.0, effort: float = 1.0) -> "SafetyLimits":
        """The same limits with velocity / effort multiplied (e.g. 0.5 for a first real trial)."""
        return SafetyLimits(self.names, self.lower, self.upper, self.velocity * velocity,
                            self.effort * effort)

    def select(self, names: Sequence[str]) -> "SafetyLimits":
        """The limits of ``names``, in that order (e.g. the order of a controller's joints)."""
        idx = []
        for nm in names:
            if nm not in self.names:
                raise SafetyError(f"joint {nm!r} not in the limits (have {list(self.names)})")
            idx.append(self.names.index(nm))
        return SafetyLimits(tuple(names), self.lower[idx], self.upper[idx], self.velocity[idx],
                            self.effort[idx])


# --- joint state / status --------------------------------------------------------------------
@dataclass
class JointStateSample:
    """The latest joint state in the limits' joint order; ``stamp`` in seconds on the filter's
    clock (the receive time, or the header stamp on a synchronised clock)."""

    position: np.ndarray
    velocity: Optional[np.ndarray]
    stamp: float


@dataclass
class SafetyStatus:
    """What the filter did to one command.

    Attributes:
        code: one of the module's status codes (``OK``, ``CLAMPED``, ``POSITION_LIMIT``, ...).
        reason: human-readable explanation; empty when ``code == OK``.
        stopped: the output is the hold command (a stop condition); the trial must be discarded.
        modified: the output differs from the input command.
        joints: indices of the joints that were clamped / limited.
    """

    code: str = OK
    reason: str = ""
    stopped: bool = False
    modified: bool = False
    joints: Tuple[int, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.code == OK


class SafetyFilter:
    """Filters every command before it reaches the robot.

    Args:
        limits: per-joint limits (:class:`SafetyLimits`), in command order.

        mode: ``"effort"`` (commands are torques / forces), ``"velocity"`` (joint velocities) or
            ``"position"`` (absolute joint position targets; see the module docstring).

        control_period: nominal control period (s).
        stale_periods: joint states older than ``stale_periods * control_period`` stop the arm.
        position_margin: soft position limits lie this far inside the URDF limits (rad / m).
        hold_damping: effort mode: hold command ``-hold_damping * qdot`` (0: zero effort).

        brake_gain: effort mode: a joint beyond a soft position limit moving outwards gets
            ``-brake_gain * qdot`` instead of the outward command (0: zeroed).
        effort_scale, velocity_scale: fractions of the URDF limits to clamp to (start low on a new
            robot); in position mode ``velocity_scale`` scales the displacement limit and
            ``effort_scale`` does not apply.
        max_image_age: s; a command computed from a camera frame older than this (relative to the
            joint state) is not sent (``STALE_IMAGE``; the camera's watchdog).
        max_step: position mode: the largest ``|target - measured position|`` per command (rad,
            scalar or one per joint, finite and > 0); default ``velocity limit * velocity_scale *
            control_period``.  Used as given (not scaled by ``velocity_scale``); ignored in the
            other modes.
    """

    MODES = ("effort", "velocity", "position")

    def __init__(self, limits: SafetyLimits, mode: str = "effort", control_period: float = 0.05,
                 stale_periods: float = 3.0, position_margin: float = 0.05,
                 hold_damping: float = 0.0, brake_gain: float = 0.0,
                 effort_scale: float = 1.0, velocity_scale: float = 1.0,
                 max_image_age: float = math.inf, max_step=None) -> None:
        if mode not in self.MODES:
            raise SafetyError(f"safety mode must be 'effort', 'velocity' or 'position', got {mode!r}")
        if not control_period > 0 or not stale_periods > 0:
            raise SafetyError("control_period and stale_periods must be > 0")
        if not (0 < effort_scale <= 1 and 0 < velocity_scale <= 1):
            raise SafetyError("effort_scale and velocity_scale must be in (0, 1]")
        if position_margin < 0 or hold_damping < 0 or brake_gain < 0:
            raise SafetyError("position_margin, hold_damping and brake_gain must be >= 0")
        self.limits = limits
        self.mode = mode
        self.n = limits.n
        self.control_period = float(control_period)
        self.stale_periods = float(stale_periods)
        self.max_age = self.stale_periods * self.control_period
        self.hold_damping = float(hold_damping)
        self.max_image_age = float(max_image_age)
        self.brake_gain = float(brake_gain)
        self._max_step_given = max_step is not None
        self.effort_scale, self.velocity_scale = float(effort_scale), float(velocity_scale)
        if max_step is None:
            step = limits.velocity * velocity_scale * self.control_period
        else:
            try:
                step = np.broadcast_to(np.asarray(max_step, dtype=np.float64), (self.n,))
            except (TypeError, ValueError):
                raise SafetyError(f"max_step must be a scalar or {self.n} values, got "
                                  f"{max_step!r}") from None
            if not (np.all(np.isfinite(step)) and np.all(step > 0)):
                raise SafetyError(f"max_step must be finite and > 0, got {max_step!r}")
        #: position mode: the per-command displacement limit ``|u - q|`` (rad, per joint)
        self.max_step = np.array(step, dtype=np.float64)
        self._set_bounds()
        margin = np.minimum(position_margin, 0.5 * (limits.upper - limits.lower))
        self.soft_lower = limits.lower + margin
        self.soft_upper = limits.upper - margin
        self._zeros = np.zeros(self.n)
        self._last_q: Optional[np.ndarray] = None     # position mode: the hold target
        self._e_stop: Optional[str] = None
        self._cancel: Optional[str] = None
        self.counts = {c: 0 for c in (OK, CLAMPED, POSITION_LIMIT) + tuple(sorted(STOP_CODES))}

    def _set_bounds(self) -> None:
        if self.mode == "effort":
            bound = self.limits.effort * self.effort_scale
        elif self.mode == "velocity":
            bound = self.limits.velocity * self.velocity_scale
        else:
            bound = self.max_step
        self._hi = np.ascontiguousarray(bound, dtype=np.float64)
        self._lo = -self._hi

    def rescale(self, effort_scale: Optional[float] = None,
                velocity_scale: Optional[float] = None) -> None:
        """Change the fractions of the URDF limits commands are clamped to, from the next command
        on (a node's live ``effort_scale`` / ``velocity_scale`` parameters); in position mode a
        derived ``max_step`` follows ``velocity_scale``."""
        e = self.effort_scale if effort_scale is None else float(effort_scale)
        v = self.velocity_scale if velocity_scale is None else float(velocity_scale)
        if not (0 < e <= 1 and 0 < v <= 1):
            raise SafetyError("effort_scale and velocity_scale must be in (0, 1]")
        self.effort_scale, self.velocity_scale = e, v
        if not self._max_step_given:
            self.max_step = self.limits.velocity * v * self.control_period
        self._set_bounds()

    # --- stop latches ---------------------------------------------------------------------------
    def e_stop(self, reason: str = "e-stop") -> None:
        """Latch the e-stop: every command becomes the hold command until :meth:`reset_e_stop`."""
        if self._e_stop is None:
            self._e_stop = reason or "e-stop"

    def reset_e_stop(self) -> None:
        """Explicitly clear a latched e-stop (an operator action; never automatic)."""
        self._e_stop = None

    @property
    def e_stopped(self) -> bool:
        return self._e_stop is not None

    def cancel(self, reason: str = "trial cancelled") -> None:
        """Hold from now on (the trial was cancelled); cleared by :meth:`begin_trial`."""
        if self._cancel is None:
            self._cancel = reason or "trial cancelled"

    @property
    def cancelled(self) -> bool:
        return self._cancel is not None

    def begin_trial(self) -> None:
        """Start a new trial: clears the cancel flag (never the e-stop)."""
        self._cancel = None

    # --- the filter -----------------------------------------------------------------------------
    @property
    def last_position(self) -> Optional[np.ndarray]:
        """The most recent finite joint positions given to :meth:`filter` / :meth:`hold` (a copy;
        None before any); the position mode hold command."""
        return None if self._last_q is None else self._last_q.copy()

    def _remember(self, joint_state: Optional[JointStateSample]) -> None:
        """Keep ``joint_state``'s positions as the position mode hold target if they are finite."""
        if joint_state is None or joint_state.position is None:
            return
        q = np.asarray(joint_state.position, dtype=np.float64)
        if q.shape == (self.n,) and np.isfinite(q).all():
            self._last_q = q.copy()

    def hold(self, joint_state: Optional[JointStateSample] = None) -> Optional[np.ndarray]:
        """The hold command: zero velocity, or zero effort plus ``-hold_damping * qdot``, or (position
        mode) the most recent finite joint positions seen, ``joint_state``'s if finite.

        Position mode only: None when no finite joint position was ever seen — the caller must
        then publish nothing.  Effort and velocity holds are always an (n,) array.
        """
        if self.mode == "position":
            self._remember(joint_state)
            return self.last_position
        if (self.mode == "effort" and self.hold_damping > 0 and joint_state is not None
                and joint_state.velocity is not None):
            v = np.asarray(joint_state.velocity, dtype=np.float64)
            if v.shape == (self.n,) and np.isfinite(v).all():
                return np.clip(-self.hold_damping * v, self._lo, self._hi)
        return self._zeros.copy()

    def _stop(self, code: str, reason: str, joint_state) -> Tuple[Optional[np.ndarray], SafetyStatus]:
        self.counts[code] += 1
        return self.hold(joint_state), SafetyStatus(code, reason, stopped=True, modified=True)

    def filter(self, command, joint_state: Optional[JointStateSample], now: float,
               image_age: Optional[float] = None) -> Tuple[Optional[np.ndarray], SafetyStatus]:
        """Make ``command`` (n,) safe given the latest ``joint_state`` at time ``now`` (s).

        ``image_age``: for a command computed from a camera frame, the frame's age relative to the
        joint state (s; ``math.inf`` when there was none); None when no frame was used.

        Returns the command to send and a :class:`SafetyStatus`; a stop condition gives the hold
        command with ``status.stopped`` and a reason.  In position mode that hold command is None
        when the filter has never seen a finite joint position (publish nothing then); a command
        that passes is never None.  A command of the wrong shape (or, in position mode, joint
        positions of the wrong shape) raises :class:`SafetyError` (a bug, not a runtime
        condition).
        """
        u = np.asarray(command, dtype=np.float64)
        if u.shape != (self.n,):
            raise SafetyError(f"command has shape {u.shape}, expected ({self.n},) for joints "
                              f"{list(self.limits.names)}")
        if self.mode == "position":
            if (joint_state is not None and joint_state.position is not None
                    and np.shape(joint_state.position) != (self.n,)):
                raise SafetyError(f"joint state has {np.size(joint_state.position)} positions, "
                                  f"expected {self.n} for joints {list(self.limits.names)}")
            self._remember(joint_state)
        if self._e_stop is not None:
            return self._stop(E_STOP, f"e-stop latched ({self._e_stop}); reset required", joint_state)
        if self._cancel is not None:
            return self._stop(CANCELLED, f"holding: {self._cancel}", joint_state)
        if joint_state is None:
            return self._stop(NO_STATE, "no joint state received yet", joint_state)
        if joint_state.position is None:
            return self._stop(NO_STATE, "joint state has no positions", None)
        age = now - joint_state.stamp
        if not age <= self.max_age:  # also catches a NaN stamp
            return self._stop(STALE_STATE, f"joint state is {age * 1e3:.1f} ms old "
                                           f"(> {self.stale_periods:g} control periods = "
                                           f"{self.max_age * 1e3:.1f} ms)", None)
        q = joint_state.position
        qd = joint_state.velocity
        if not math.isfinite(float(np.sum(q))) or (qd is not None and not math.isfinite(float(np.sum(qd)))):
            return self._stop(NONFINITE_STATE, "non-finite joint state", None)
        if image_age is not None and not image_age <= self.max_image_age:
            return self._stop(STALE_IMAGE, "no camera frame" if math.isinf(image_age) else
                              f"camera frame is {image_age * 1e3:.0f} ms older than the joint "
                              f"state (> {self.max_image_age * 1e3:.0f} ms)", joint_state)
        if not math.isfinite(float(u.sum())):
            bad = [self.limits.names[i] for i in np.flatnonzero(~np.isfinite(u))]
            return self._stop(NONFINITE_COMMAND, f"non-finite command for joints {bad}", joint_state)

        q = np.asarray(q, dtype=np.float64)
        if self.mode == "position":
            return self._clamp_position(u, q)
        out = np.minimum(np.maximum(u, self._lo), self._hi)
        clamped = out != u
        over = q > self.soft_upper
        under = q < self.soft_lower
        if over.any() or under.any():
            push = (over & (out > 0)) | (under & (out < 0))
            if push.any():
                idx = np.flatnonzero(push)
                if self.mode == "effort" and self.brake_gain > 0 and qd is not None:
                    v = np.asarray(qd, dtype=np.float64)
                    brake = np.where(over, np.minimum(-self.brake_gain * v, 0.0),
                                     np.maximum(-self.brake_gain * v, 0.0))
                    out[idx] = np.clip(brake[idx], self._lo[idx], self._hi[idx])
                else:
                    out[idx] = 0.0
                self.counts[POSITION_LIMIT] += 1
                names = [f"{self.limits.names[i]} at {q[i]:.3f} "
                         f"({'>' if over[i] else '<'} soft limit "
                         f"{self.soft_upper[i] if over[i] else self.soft_lower[i]:.3f})" for i in idx]
                return out, SafetyStatus(POSITION_LIMIT, "position limit: outward command "
                                         f"{'braked' if self.brake_gain > 0 and self.mode == 'effort' else 'zeroed'}"
                                         f" for {', '.join(names)}",
                                         modified=True, joints=tuple(int(i) for i in idx))
        if clamped.any():
            idx = np.flatnonzero(clamped)
            self.counts[CLAMPED] += 1
            return out, SafetyStatus(CLAMPED, f"{self.mode} clamped to limits on joints "
                                     f"{[self.limits.names[i] for i in idx]}", modified=True,
                                     joints=tuple(int(i) for i in idx))
        self.counts[OK] += 1
        return out, SafetyStatus()

    def _clamp_position(self, u: np.ndarray, q: np.ndarray) -> Tuple[np.ndarray, SafetyStatus]:
        """Position mode: clamp the targets ``u`` into the soft limits (a joint outside them may
        only come back inwards) and to within ``max_step`` of the measured positions ``q``."""
        pos_lo = np.minimum(self.soft_lower, q)       # outside: down to q, never further out
        pos_hi = np.maximum(self.soft_upper, q)
        lo = np.maximum(pos_lo, q - self.max_step)
        hi = np.minimum(pos_hi, q + self.max_step)
        out = np.minimum(np.maximum(u, lo), hi)
        over = q > self.soft_upper
        under = q < self.soft_lower
        outward = (over & (u > q)) | (under & (u < q))
        clamped = (out != u) & ~outward
        names = self.limits.names

        def why(i: int) -> str:
            if u[i] > out[i]:
                limit = "step" if q[i] + self.max_step[i] < pos_hi[i] else "soft"
            else:
                limit = "step" if q[i] - self.max_step[i] > pos_lo[i] else "soft"
            if limit == "step":
                return f"{names[i]} (displacement limit {self.max_step[i]:.4g} rad from {q[i]:.3f})"
            bound = self.soft_upper[i] if u[i] > out[i] else self.soft_lower[i]
            return f"{names[i]} (soft position limit {bound:.3f})"

        also = (f"; position clamped on {', '.join(why(i) for i in np.flatnonzero(clamped))}"
                if clamped.any() else "")
        if outward.any():
            idx = np.flatnonzero(outward)
            self.counts[POSITION_LIMIT] += 1
            held = [f"{names[i]} at {q[i]:.3f} ({'>' if over[i] else '<'} soft limit "
                    f"{self.soft_upper[i] if over[i] else self.soft_lower[i]:.3f})" for i in idx]
            return out, SafetyStatus(POSITION_LIMIT, "position limit: outward target held at the "
                                     f"current position for {', '.join(held)}{also}",
                                     modified=True, joints=tuple(int(i) for i in idx))
        if clamped.any():
            idx = np.flatnonzero(clamped)
            self.counts[CLAMPED] += 1
            return out, SafetyStatus(CLAMPED, f"position clamped on {', '.join(why(i) for i in idx)}",
                                     modified=True, joints=tuple(int(i) for i in idx))
        self.counts[OK] += 1
        return out, SafetyStatus()


# --- rate keeping ----------------------------------------------------------------------------
class RateKeeper:
    """Keeps a loop at ``rate_hz`` on a monotonic clock and counts overruns.

    ``sleep()`` waits until the next period boundary.  A period whose work already ran past the
    boundary counts as an overrun and does not sleep; when the loop falls more than a whole period
    behind, the schedule is re-based on now (no burst of catch-up iterations).

    Args:
        rate_hz: loop rate.
        clock: monotonic time in seconds (default :func:`time.monotonic`).
        sleep: sleeps for a number of seconds (default :func:`time.sleep`).
    """

    def __init__(self, rate_hz: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.period = 1.0 / float(rate_hz)
        self._clock = clock
        self._sleep = sleep
        self.reset()

    def reset(self) -> None:
        self.overruns = 0
        self.iterations = 0
        self.max_lateness = 0.0
        self._next = self._clock() + self.period

    def sleep(self) -> bool:
        """Wait for the next period; returns False if this period overran."""
        self.iterations += 1
        now = self._clock()
        delay = self._next - now
        if delay >= 0:
            self._sleep(delay)
            self._next += self.period
            return True
        self.overruns += 1
        self.max_lateness = max(self.max_lateness, -delay)
        if -delay > self.period:
            self._next = now + self.period
        else:
            self._next += self.period
        return False
