"""Every message from the graph is untrusted input: checks against the robot and the task.

A process that speaks DDS on the domain can send anything the interface types allow: a RunTrial
goal for another robot's dimensions, a controller with gains of 1e300, a horizon of four billion
steps, a covariance factor that is not one, trials full of NaN for the dynamics fit, image paths
that name ``/dev/zero``.  :mod:`gps_ros.ros.convert` already refuses what cannot be a message of
its type (sizes that disagree with the declared shape, non-finite controllers, a Cholesky factor
that is not lower triangular with a positive diagonal); this module refuses what the *robot and the
task* cannot take, before anything is built from it or sent to the motors:

* :func:`check_run_trial_goal` — the sampler's goals: source, condition, horizon, the controller's
  dimensions and magnitudes (:class:`Bounds`), the explicit noise, the policy's noise factor;
* :func:`check_command` — the commands a simulated robot takes (size, finite);
* :func:`check_state` — the full states a sim_node sends a sampler (size);
* :func:`check_fit_request`, :func:`check_train_goal` — FitDynamics requests and TrainPolicy
  goals (their trials: :func:`check_trials`);
* :func:`check_optimize_request` — the KL-constrained LQR's inputs.

Each raises :class:`Refused` with one line that says why; the nodes log it, answer the request or
goal with it (a service's ``message``, a RunTrial result's ``trajectory.reason``, a TrainPolicy
result's ``message``) and go on.  Pure Python and numpy: tested in CI without ROS
(``tests/test_validate.py``); the fuzz run on a ROS build is ``tests/test_launch_fuzz.py``.

Magnitude bounds are relative to the robot's command scale (:func:`command_scale`): the effort
limit of each joint in effort mode, its velocity limit in velocity mode, its position range in
position mode (2π for a continuous joint).  Trained controllers of the reach tasks stay below 12 x
that scale in gain per unit of state and 2 x in feed-forward, with noise standard deviations below
0.2 x (Panda, iiwa, UR5, SO-101, iterations 1-4); the defaults (1000, 1000, 10) refuse only what
no GPS iteration produces.  They are node parameters (:data:`BOUND_PARAMS`).
"""
from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

#: node parameters of the magnitude bounds (multiples of :func:`command_scale`)
BOUND_PARAMS = {
    "max_gain": 1000.0,           # |K[t, i, j]| <= max_gain x scale[i] (per unit of state)
    "max_feedforward": 1000.0,    # |k[t, i]| <= max_feedforward x scale[i]
    "max_noise_std": 10.0,        # sqrt(Σ[t, i, i]) <= max_noise_std x scale[i]
    "max_noise_draw": 10.0,       # |explicit standard-normal noise| <= this (a 10-sigma draw)
}

#: file types a Trajectory's image_paths may name (what :func:`convert.load_image_paths` reads)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npz", ".npy")


class Refused(ValueError):
    """A message the robot or the task cannot take; ``str()`` is the one-line reason."""


def brief(values, n: int = 6) -> str:
    """A message's numbers in a log line: the first ``n`` and how many there are (a hostile
    message can hold millions)."""
    try:
        size = len(values)
    except TypeError:
        return repr(values)[:80]
    head = ", ".join(f"{float(v):.4g}" if isinstance(v, (int, float, np.floating, np.integer))
                     else repr(v)[:20] for v in list(values[:n]))
    return f"[{head}{', ...' if size > n else ''}] ({size} value{'' if size == 1 else 's'})"


def command_scale(limits, mode: str) -> np.ndarray:
    """The size of one joint's command: effort limit (effort), velocity limit (velocity) or
    position range (position; 2π where a limit is infinite)."""
    if mode == "effort":
        return np.asarray(limits.effort, dtype=np.float64)
    if mode == "velocity":
        return np.asarray(limits.velocity, dtype=np.float64)
    if mode == "position":
        span = np.asarray(limits.upper, dtype=np.float64) - np.asarray(limits.lower, dtype=np.float64)
        return np.where(np.isfinite(span) & (span > 0), span, 2 * math.pi)
    raise ValueError(f"command mode {mode!r} is not effort, velocity or position")


@dataclass(frozen=True)
class Bounds:
    """What a message may hold for one robot and task.

    Attributes:
        dX, dU: the state and command dimensions of the node's controllers.
        horizon: the task's T (the longest trial a goal may ask for).
        num_conditions: conditions of the task (goals name one of them).
        scale: (dU,) command scale per joint (:func:`command_scale`).
        max_gain, max_feedforward, max_noise_std, max_noise_draw: see :data:`BOUND_PARAMS`.
    """

    dX: int
    dU: int
    horizon: int
    num_conditions: int
    scale: np.ndarray
    max_gain: float = BOUND_PARAMS["max_gain"]
    max_feedforward: float = BOUND_PARAMS["max_feedforward"]
    max_noise_std: float = BOUND_PARAMS["max_noise_std"]
    max_noise_draw: float = BOUND_PARAMS["max_noise_draw"]

    def __post_init__(self) -> None:
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        if scale.shape != (self.dU,) or not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"Bounds.scale must be {self.dU} finite positive values, got {scale}")
        object.__setattr__(self, "scale", scale)
        for k in ("max_gain", "max_feedforward", "max_noise_std", "max_noise_draw"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{k} must be a finite number > 0, got {v}")
        if min(self.dX, self.dU, self.horizon, self.num_conditions) < 1:
            raise ValueError(f"Bounds: dX, dU, horizon, num_conditions must be >= 1, got "
                             f"{self.dX}, {self.dU}, {self.horizon}, {self.num_conditions}")

    @classmethod
    def for_task(cls, task, dX: int, horizon: int, num_conditions: int, params=None) -> "Bounds":
        """The bounds of a :class:`gps_ros.task.TaskModel`'s robot in its command mode;
        ``params`` (a namespace with :data:`BOUND_PARAMS`) overrides the defaults."""
        extra = {k: float(getattr(params, k)) for k in BOUND_PARAMS if hasattr(params, k)}
        return cls(int(dX), int(task.dU), int(horizon), int(num_conditions),
                   command_scale(task.description.limits(), task.command), **extra)


def _worst(ratio: np.ndarray) -> tuple:
    """(value, index) of the largest entry of ``ratio``."""
    i = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    return float(ratio[i]), tuple(int(j) for j in i)


def check_controller(ctrl, b: Bounds, what: str = "controller") -> None:
    """A LinearGaussianController (already a well-formed one, :func:`convert.controller_from_msg`)
    for this robot: its dimensions, gains, feed-forward and noise within ``b``."""
    T, dU, dX = ctrl.K.shape
    if (dX, dU) != (b.dX, b.dU):
        raise Refused(f"{what} is for dX={dX}, dU={dU}; this robot's are dX={b.dX}, dU={b.dU}")
    if not 1 <= T <= b.horizon:
        raise Refused(f"{what} horizon {T} is outside 1..{b.horizon} (the task's T)")
    s = b.scale
    r, (t, i, j) = _worst(np.abs(ctrl.K) / s[None, :, None])
    if r > b.max_gain:
        raise Refused(f"{what} gain K[{t}, {i}, {j}] = {ctrl.K[t, i, j]:.4g} is {r:.3g} x the "
                      f"command scale {s[i]:.4g} of joint {i} (max_gain {b.max_gain:g})")
    r, (t, i) = _worst(np.abs(ctrl.k) / s[None, :])
    if r > b.max_feedforward:
        raise Refused(f"{what} feed-forward k[{t}, {i}] = {ctrl.k[t, i]:.4g} is {r:.3g} x the "
                      f"command scale {s[i]:.4g} of joint {i} (max_feedforward "
                      f"{b.max_feedforward:g})")
    _check_noise(np.diagonal(ctrl.pol_covar, axis1=-2, axis2=-1), b, what)


def _check_noise(var: np.ndarray, b: Bounds, what: str) -> None:
    std = np.sqrt(np.maximum(np.atleast_2d(var), 0.0))
    r, (t, i) = _worst(std / b.scale[None, :])
    if r > b.max_noise_std:
        raise Refused(f"{what} noise std {std[t, i]:.4g} of joint {i} is {r:.3g} x its command "
                      f"scale {b.scale[i]:.4g} (max_noise_std {b.max_noise_std:g})")


def check_run_trial_goal(goal, b: Bounds) -> None:
    """A gps_msgs/action/RunTrial goal for this sampler, checked before anything is built from
    it: a known source, a condition of the task, a horizon within the task's, explicit noise of
    (T, dU) finite standard-normal draws, a controller for this robot within ``b``, or a policy
    export with a (dU, dU) lower-triangular noise factor within ``b``."""
    from gps_ros.ros import convert

    cls = type(goal)
    source = int(goal.source)
    if source not in (int(cls.SOURCE_CONTROLLER), int(cls.SOURCE_POLICY)):
        raise Refused(f"RunTrial source {source} is neither SOURCE_CONTROLLER "
                      f"({cls.SOURCE_CONTROLLER}) nor SOURCE_POLICY ({cls.SOURCE_POLICY})")
    c = int(goal.condition)
    if not 0 <= c < b.num_conditions:
        raise Refused(f"RunTrial condition {c} is not one of the task's 0..{b.num_conditions - 1}")
    T = int(goal.horizon)
    if source == int(cls.SOURCE_CONTROLLER):
        ctrl_T = int(goal.controller.horizon)
        if T not in (0, ctrl_T):
            raise Refused(f"RunTrial horizon {T} != its controller's horizon {ctrl_T}")
        T = ctrl_T
        if goal.policy_checkpoint:
            raise Refused("a RunTrial goal with SOURCE_CONTROLLER carries a policy_checkpoint too")
    if not 1 <= T <= b.horizon:
        raise Refused(f"RunTrial horizon {T} is outside 1..{b.horizon} (the task's T)")
    if len(goal.noise):
        if len(goal.noise) != T * b.dU:
            raise Refused(f"RunTrial noise has {len(goal.noise)} values, expected T x dU = "
                          f"{T} x {b.dU} = {T * b.dU}")
        noise = np.asarray(goal.noise, dtype=np.float64)
        if not np.isfinite(noise).all():
            raise Refused("RunTrial noise holds NaN or inf")
        worst = float(np.abs(noise).max())
        if worst > b.max_noise_draw:
            raise Refused(f"RunTrial noise holds a {worst:.3g}-sigma draw (max_noise_draw "
                          f"{b.max_noise_draw:g}; it is standard normal)")
    if source == int(cls.SOURCE_CONTROLLER):
        try:
            ctrl = convert.controller_from_msg(goal.controller)
        except convert.ShapeError as err:
            raise Refused(str(err)) from None
        check_controller(ctrl, b, "RunTrial controller")
        return
    if not goal.policy_checkpoint:
        raise Refused("a RunTrial goal with SOURCE_POLICY needs policy_checkpoint")
    if len(goal.policy_covariance_cholesky):
        n = b.dU
        if len(goal.policy_covariance_cholesky) != n * n:
            raise Refused(f"RunTrial policy_covariance_cholesky has "
                          f"{len(goal.policy_covariance_cholesky)} values, expected dU x dU = {n * n}")
        L = np.asarray(goal.policy_covariance_cholesky, dtype=np.float64).reshape(n, n)
        if not np.isfinite(L).all() or not np.array_equal(L, np.tril(L)) or np.any(np.diag(L) <= 0):
            raise Refused("RunTrial policy_covariance_cholesky must be finite and lower "
                          "triangular with a positive diagonal")
        _check_noise(np.sum(L * L, axis=1), b, "RunTrial policy")


def check_command(data, n: int) -> Optional[str]:
    """Why a command message's data cannot drive an ``n``-joint robot, or None."""
    if len(data) != n:
        return f"command {brief(data)} for {n} joints"
    if not np.isfinite(np.asarray(data, dtype=np.float64)).all():
        return f"command {brief(data)} holds NaN or inf"
    return None


def check_state(data, dX: int) -> Optional[str]:
    """Why a gps_state message's data is not a state of this task, or None (a non-finite state
    is passed on: the safety filter stops the trial on it with its reason)."""
    if len(data) != dX:
        return f"gps_state {brief(data)}: the task's state has {dX} values"
    return None


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_trials(msgs: Sequence, horizon: int, num_conditions: int, what: str = "trials") -> None:
    """The Trajectory messages of a FitDynamics request or a TrainPolicy goal: conditions of the
    task, the task's horizon, one (dX, dU) for all, finite states and actions in every kept
    trial (a discarded trial may end in the non-finite state that stopped it), image paths that
    are regular image files, at most one frame per step."""
    if not msgs:
        raise Refused(f"{what}: none given")
    dims = None
    for i, m in enumerate(msgs):
        c, T = int(m.condition), int(m.horizon)
        if not 0 <= c < num_conditions:
            raise Refused(f"{what}: trial {i} names condition {c}, not one of the task's "
                          f"0..{num_conditions - 1}")
        if T != horizon:
            raise Refused(f"{what}: trial {i} has horizon {T}, the task's is {horizon}")
        d = (int(m.dx), int(m.du))
        if min(d) < 1:
            raise Refused(f"{what}: trial {i} has dx={d[0]}, du={d[1]}")
        if dims is None:
            dims = d
        elif d != dims:
            raise Refused(f"{what}: trial {i} has dx={d[0]}, du={d[1]}, trial 0 dx={dims[0]}, "
                          f"du={dims[1]}")
        if len(m.states) != T * d[0] or len(m.actions) != T * d[1]:
            raise Refused(f"{what}: trial {i} has {len(m.states)} state and {len(m.actions)} "
                          f"action values, expected {T * d[0]} and {T * d[1]}")
        if not m.discarded and not (np.isfinite(np.asarray(m.states, dtype=np.float64)).all()
                                    and np.isfinite(np.asarray(m.actions, dtype=np.float64)).all()):
            raise Refused(f"{what}: trial {i} (kept) holds NaN or inf")
        if len(m.images) > T or len(m.image_paths) > T:
            raise Refused(f"{what}: trial {i} has {max(len(m.images), len(m.image_paths))} "
                          f"frames for {T} steps")
        for p in m.image_paths:
            if not str(p).lower().endswith(IMAGE_SUFFIXES) or not _regular_file(str(p)):
                raise Refused(f"{what}: trial {i} image path {str(p)[:200]!r} is not a regular "
                              f"{'/'.join(IMAGE_SUFFIXES)} file")


def check_fit_request(request, horizon: int, num_conditions: int) -> None:
    """A FitDynamics request: the task's number of conditions, then :func:`check_trials`."""
    if int(request.num_conditions) != num_conditions:
        raise Refused(f"fit_dynamics for {request.num_conditions} conditions, the task has "
                      f"{num_conditions}")
    check_trials(request.trajectories, horizon, num_conditions, "fit_dynamics")


def check_train_goal(goal, horizon: int, num_conditions: int) -> None:
    """A TrainPolicy goal: :func:`check_trials`, then one controller per condition, of the
    trials' horizon and dimensions."""
    check_trials(goal.trajectories, horizon, num_conditions, "train_policy")
    if len(goal.controllers) != num_conditions:
        raise Refused(f"train_policy has {len(goal.controllers)} controllers, the task "
                      f"{num_conditions} conditions")
    t0 = goal.trajectories[0]
    for i, c in enumerate(goal.controllers):
        if (int(c.horizon), int(c.dx), int(c.du)) != (horizon, int(t0.dx), int(t0.du)):
            raise Refused(f"train_policy controller {i} is T={c.horizon}, dx={c.dx}, du={c.du}; "
                          f"the trials' T={horizon}, dx={t0.dx}, du={t0.du}")


def _symmetric(a: np.ndarray, tol: float = 1e-8) -> bool:
    """Every matrix of the (..., n, n) stack ``a`` finite and symmetric (to ``tol`` relative)."""
    if not np.isfinite(a).all():
        return False
    scale = max(1.0, float(np.abs(a).max()))
    return bool(np.abs(a - np.swapaxes(a, -1, -2)).max() <= tol * scale)


def _symmetric_psd(a: np.ndarray, tol: float = 1e-8) -> bool:
    """Every matrix of the (..., n, n) stack ``a`` finite, symmetric and positive semi-definite."""
    if not _symmetric(a, tol):
        return False
    scale = max(1.0, float(np.abs(a).max()))
    return bool(np.linalg.eigvalsh(a).min() >= -tol * scale)


def check_optimize_request(dynamics: Sequence, costs: Sequence, previous: Sequence,
                           epsilon: Sequence[float], eta0: Sequence[float], horizon: int) -> None:
    """The converted inputs of an OptimizeTrajectories request: per condition one dynamics, cost
    and previous controller of the task's horizon and one (dX, dU); finite values, symmetric
    positive semi-definite covariances, symmetric cost Hessians (a cost's Hessian may be
    indefinite: the LQR regularises it); epsilon > 0, eta0 >= 0."""
    M = len(dynamics)
    if M == 0:
        raise Refused("optimize_trajectories: no conditions")
    if not (len(costs) == len(previous) == len(epsilon) == len(eta0) == M):
        raise Refused(f"optimize_trajectories: {M} dynamics, {len(costs)} costs, "
                      f"{len(previous)} previous, {len(epsilon)} epsilon, {len(eta0)} eta0")
    for m, (dyn, cost, prev) in enumerate(zip(dynamics, costs, previous)):
        T, dX, dXU = dyn.Fm.shape
        dU = dXU - dX
        where = f"optimize_trajectories condition {m}"
        if T != horizon:
            raise Refused(f"{where}: horizon {T}, the task's is {horizon}")
        if dU < 1:
            raise Refused(f"{where}: dynamics with du={dU}")
        if cost.Cm.shape != (T, dXU, dXU):
            raise Refused(f"{where}: cost of shape {cost.Cm.shape[0]} x {cost.Cm.shape[1]}, the "
                          f"dynamics' is {T} x {dXU}")
        if prev.K.shape != (T, dU, dX):
            raise Refused(f"{where}: previous controller of shape {prev.K.shape}, expected "
                          f"{(T, dU, dX)}")
        for name, a in (("Fm", dyn.Fm), ("fv", dyn.fv), ("x0mu", dyn.x0mu), ("cost cv", cost.cv),
                        ("cost cc", cost.cc)):
            if not np.isfinite(a).all():
                raise Refused(f"{where}: {name} holds NaN or inf")
        for name, a in (("dyn_covar", dyn.dyn_covar), ("x0sigma", dyn.x0sigma)):
            if not _symmetric_psd(np.asarray(a, dtype=np.float64)):
                raise Refused(f"{where}: {name} is not symmetric positive semi-definite")
        if not _symmetric(np.asarray(cost.Cm, dtype=np.float64)):
            raise Refused(f"{where}: cost cm is not finite and symmetric")
        e, h = float(epsilon[m]), float(eta0[m])
        if not (math.isfinite(e) and e > 0):
            raise Refused(f"{where}: epsilon {e} must be finite and > 0")
        if not (math.isfinite(h) and h >= 0):
            raise Refused(f"{where}: eta0 {h} must be finite and >= 0")
