"""The task as the learner knows it, and the pieces the GPS loop builds from it.

* :class:`StateLayout` -- where joint positions, velocities and EE points live in the state.
* :class:`TaskModel` -- the robot model (:mod:`gps_ros.robot`) with the task's EE points and
  conditions, without a simulator: the state from joint positions and velocities (the sampler's
  ``fk`` state on a real robot), the conditions' start poses and EE targets, point Jacobians and
  inertia.  Building one checks the agent section against the robot (start poses, targets within
  reach): one :class:`~gps_ros.robot.RobotError` line naming the key.
* :func:`build_cost`, :func:`build_initial_controllers`, :func:`linear_model` -- the cost and the
  first controllers, on a :class:`TaskModel` (the simulator offers the same attributes).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, List, Optional

import numpy as np

from .control import LinearGaussianController
from .control.init import joint_feedback_controller, lqr_init_controller
from .cost import ActionCost, EEPointsCost, WeightedSumCost
from .robot import RobotDescription, RobotError, RobotModel
from .robot.agent import FROM_ROS, check_agent, check_pose, robot_description  # noqa: F401 (re-exported)
from .robot.actuation import Actuation

if TYPE_CHECKING:
    from .config import AgentConfig, ExperimentConfig

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class StateLayout:
    """Where each quantity lives in the state vector
    ``[q (n), qdot (n), EE points - targets (3P), EE point velocities (3P)]``."""

    joint_pos: slice
    joint_vel: slice
    ee_points: slice
    ee_vel: slice
    dX: int
    n_points: int

    @staticmethod
    def for_points(n_points: int, n_joints: int) -> "StateLayout":
        a = n_joints
        b = a + n_joints
        c = b + 3 * n_points
        d = c + 3 * n_points
        return StateLayout(slice(0, a), slice(a, b), slice(b, c), slice(c, d), d, n_points)

    @property
    def n_joints(self) -> int:
        return self.joint_pos.stop - self.joint_pos.start

    @property
    def ee_indices(self) -> np.ndarray:
        """State dimensions of the end-effector points (relative to their targets)."""
        return np.arange(self.ee_points.start, self.ee_points.stop)

    @property
    def ee_vel_indices(self) -> np.ndarray:
        return np.arange(self.ee_vel.start, self.ee_vel.stop)

    @property
    def joint_state_indices(self) -> np.ndarray:
        """State dimensions of the joint positions then velocities (what a policy network sees)."""
        return np.r_[self.joint_pos.start:self.joint_pos.stop, self.joint_vel.start:self.joint_vel.stop]


def ee_targets(target, R0: np.ndarray, ee_points: np.ndarray, peg=None) -> np.ndarray:
    """The EE points' targets (P, 3) of a condition: ``target`` is where the EE origin goes
    (with a peg: the hole's opening, the points' targets are their full-insertion positions),
    the hand keeping its start orientation ``R0``."""
    target = np.asarray(target, dtype=np.float64)
    if peg is not None:
        from .sim.peg import ee_target

        return ee_target(target, R0, peg) + ee_points @ R0.T
    return target + ee_points @ R0.T


#: PyBullet applies joint damping explicitly (-D q̇ with q̇ from the substep's start): the velocity
#: of the arm's stiffest mode is multiplied by 1 - dt λmax(M⁻¹ D) per substep, which oscillates
#: once dt λmax exceeds 1 and diverges at 2.  The damping is kept where dt λmax <= this bound (the
#: most that does not oscillate): a light joint (a wrist) gets less, and a light chain as a whole
#: (the Panda: 0.48-0.54 at d = 0.5, 240 Hz, unchanged; the SO-100 at d = 0.5: 4.4, diverging)
MAX_DAMPING_RATIO = 1.0
_WARNED: set = set()          # the lowered dampings already reported in this process


class TaskModel:
    """The robot model with the task's EE points and conditions (see the module docstring).

    Args:
        agent: the agent section.
        description: an already checked robot description (default: from ``agent.robot``).
        urdf: URDF text in place of ``agent.robot.urdf`` (a node's robot_description).

    Raises :class:`~gps_ros.robot.RobotError` (one line, naming the key) when the robot or the
    agent section does not fit it.
    """

    def __init__(self, agent: AgentConfig, description: Optional[RobotDescription] = None,
                 urdf: Optional[str] = None) -> None:
        self.cfg = agent
        model = None
        if description is None:
            model = check_agent(agent, urdf)
            description = model.description
        if agent.peg is not None and "peg" not in description.links:
            from .sim.peg import with_peg           # the peg in the hand: a payload of the arm

            description = description.with_urdf(with_peg(description.urdf, description.ee_link, agent.peg))
            model = None
        self.description = description
        self.robot = model if model is not None else RobotModel(description)
        self.command = self.description.command
        self.joint_names = self.description.joints
        self.n = self.dU = self.robot.n
        pts = np.asarray(agent.ee_points, dtype=np.float64).reshape(-1, 3)
        if np.any(pts[0] != 0.0):
            raise RobotError(f"agent.ee_points[0]: must be the EE origin (0, 0, 0), got {tuple(pts[0])}")
        self.ee_points_local = pts
        self.layout = StateLayout.for_points(len(pts), self.n)
        self.dX = self.layout.dX
        self.n_substeps = int(round(agent.physics_rate_hz / agent.control_rate_hz))
        self.dt = self.n_substeps / agent.physics_rate_hz
        self.peg = agent.peg
        self._starts = [None if c.start_joint_positions is None else
                        check_pose(self.robot, f"agent.conditions[{i}].start_joint_positions",
                                   c.start_joint_positions)
                        for i, c in enumerate(agent.conditions)]
        self._start = check_pose(self.robot, "agent.start_joint_positions", agent.start_joint_positions)
        self._targets: dict = {}
        self.joint_damping = self._joint_damping(agent)

    def _joint_damping(self, agent) -> np.ndarray:
        """Per-joint viscous damping (N m s/rad): ``agent.joint_damping``, less where PyBullet's
        explicit damping would oscillate or diverge (see :data:`MAX_DAMPING_RATIO`), with a
        warning: capped on each joint whose inertia is too small for it, then scaled down as a
        whole where the coupled arm still exceeds the bound (a light chain, e.g. the SO-100)."""
        from scipy.linalg import eigh

        M = self.robot.mass_matrix(self._start)
        dt = 1.0 / self.cfg.physics_rate_hz
        d = np.minimum(float(agent.joint_damping), MAX_DAMPING_RATIO * np.diag(M) / dt)
        rho = float(eigh(np.diag(d), M, eigvals_only=True).max()) * dt   # dt λmax(M⁻¹ D)
        if rho > MAX_DAMPING_RATIO:
            d = d * (MAX_DAMPING_RATIO / rho)
        low = np.flatnonzero(d < agent.joint_damping)
        key = tuple((self.joint_names[j], round(float(d[j]), 6)) for j in low)
        if low.size and key not in _WARNED:
            _WARNED.add(key)
            log.warning("agent.joint_damping %g lowered on %s: the arm's inertia at the start pose "
                        "is too small for explicit damping at %g Hz physics (dt λmax(M⁻¹ D) <= %g)",
                        agent.joint_damping, ", ".join(f"{n} to {v:.3g}" for n, v in key),
                        self.cfg.physics_rate_hz, MAX_DAMPING_RATIO)
        return d

    # --- conditions ---------------------------------------------------------------------------
    @property
    def num_conditions(self) -> int:
        return len(self.cfg.conditions)

    def start_pose(self, condition: int) -> np.ndarray:
        """The condition's start joint positions (n,)."""
        if not 0 <= condition < self.num_conditions:
            raise IndexError(f"condition {condition} out of range (have {self.num_conditions})")
        q = self._starts[condition]
        return (self._start if q is None else q).copy()

    def ee_targets(self, condition: int) -> np.ndarray:
        """The EE points' targets (P, 3) of a condition (:func:`ee_targets`)."""
        if condition not in self._targets:
            _, R0 = self.robot.link_pose(self.start_pose(condition))
            self._targets[condition] = ee_targets(self.cfg.conditions[condition].target, R0,
                                                  self.ee_points_local, self.peg)
        return self._targets[condition]

    # --- state ----------------------------------------------------------------------------------
    def state(self, q, qd, condition: int) -> np.ndarray:
        """The state (dX,) at joint positions ``q`` and velocities ``qd`` (None: at rest)."""
        q = np.asarray(q, dtype=np.float64)
        qd = np.zeros(self.n) if qd is None else np.asarray(qd, dtype=np.float64)
        pts, vel = self.robot.point_state(q, qd, self.ee_points_local)
        return np.concatenate([q, qd, (pts - self.ee_targets(condition)).ravel(), vel.ravel()])

    def initial_state(self, condition: int) -> np.ndarray:
        """The state at the condition's start pose, at rest."""
        return self.state(self.start_pose(condition), None, condition)

    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia M(q) (n, n) of the controlled joints."""
        return self.robot.mass_matrix(q)

    def command_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) (n,) of the robot's command in its interface's units: joint torques within
        ``torque_limit_scale`` x the URDF effort limits, joint velocities within
        ``velocity_limit_scale`` x the velocity limits, or joint positions within the joint limits
        (a continuous joint's within ±2π)."""
        r = self.robot
        if self.command == "effort":
            hi = self.cfg.torque_limit_scale * r.effort_limit
            return -hi, hi
        if self.command == "velocity":
            hi = self.cfg.velocity_limit_scale * r.velocity_limit
            return -hi, hi
        return np.maximum(r.lower, -2 * np.pi), np.minimum(r.upper, 2 * np.pi)

    def ee_point_jacobian(self, q) -> np.ndarray:
        """d(EE points)/dq (3P, n) at joint positions ``q``."""
        return self.robot.point_jacobian(q, self.ee_points_local)

    def ee_distance(self, X) -> np.ndarray:
        """Distance of the EE origin to the target, from state(s) ``X`` (..., dX) -> (...)."""
        s = self.layout.ee_points.start
        return np.linalg.norm(np.asarray(X)[..., s:s + 3], axis=-1)

    def insertion(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Peg task: (insertion depth in m, inserted?) from state(s) ``X`` (..., dX); see
        :func:`gps_ros.sim.peg.insertion`."""
        if self.peg is None:
            raise RuntimeError("insertion() needs agent.peg")
        from .sim.peg import insertion

        tip = next(i for i, pt in enumerate(self.ee_points_local)
                   if np.allclose(pt, [0.0, 0.0, self.peg.tip]))
        s = self.layout.ee_points.start + 3 * tip
        return insertion(np.asarray(X)[..., s:s + 3], self.peg)


def point_weights(wp, k: int) -> np.ndarray:
    """A cost.ee term's per-coordinate weights over ``k`` EE point coordinates: ``wp`` of 3
    values (x, y, z) is repeated for every point, 3 per point is taken as is, None is all 1."""
    if wp is None:
        return np.ones(k)
    w = np.asarray(wp, dtype=np.float64)
    if w.size == 3:
        w = np.tile(w, k // 3)
    if w.size != k:
        raise ValueError(f"cost.ee wp needs 3 or {k} values, got {len(wp)}")
    return w


def loop_kwargs(cfg: ExperimentConfig, task: TaskModel) -> dict:
    """What the GPS loop needs of the task besides its stages, the same in-process and over ROS:
    the final-distance report, the task metrics (peg insertion) and the exploration noise shape."""
    ic = cfg.init_controller
    return dict(distance_fn=lambda X: task.ee_distance(X[:, -1]), task_metrics=task_metrics(task),
                noise_kwargs=dict(smooth=ic.smooth_noise, sigma=ic.smooth_sigma))


def actuation(cfg: ExperimentConfig, task: TaskModel) -> Actuation:
    """The task's :class:`~gps_ros.robot.actuation.Actuation` (its command interface, control
    period and the simulated arm's viscous joint damping)."""
    return Actuation(task.command, task.dt, task.joint_damping)


def build_cost(cfg: ExperimentConfig, task: TaskModel) -> WeightedSumCost:
    """Action cost plus the distance-penalty terms on the EE points (see :mod:`gps_ros.cost`).

    The action cost penalises the joint accelerations the commands ask for (in effort mode the
    torques over the inertia's diagonal at the start pose, :mod:`gps_ros.robot.actuation`), unless
    ``cost.action.per_joint`` gives explicit weights on the commands themselves."""
    a = cfg.cost.action
    act = actuation(cfg, task)
    scale = act.action_scale(task.mass_matrix(cfg.agent.start_joint_positions))
    dU, lay = task.dU, task.layout
    reference = None
    if a.per_joint is not None:
        if len(a.per_joint) != dU:
            raise ValueError(f"cost.action.per_joint needs {dU} values, got {len(a.per_joint)}")
        w = np.asarray(a.per_joint, float)
    else:
        w = 1.0 / np.asarray(scale, float) ** 2
        Aq, Av = act.action_reference(dU)
        if Aq.any() or Av.any():
            reference = np.zeros((dU, lay.dX))
            reference[:, lay.joint_pos] = Aq
            reference[:, lay.joint_vel] = Av
    costs, weights = [ActionCost(w, reference)], [a.weight]
    for term in cfg.cost.ee:
        idx = lay.ee_indices if term.on == "points" else lay.ee_vel_indices
        costs.append(EEPointsCost(idx, wp=point_weights(term.wp, len(idx)), l1=term.l1, l2=term.l2, alpha=term.alpha,
                                  ramp=term.ramp, final_multiplier=term.final_multiplier))
        weights.append(term.weight)
    return WeightedSumCost(costs, weights)


def build_initial_controllers(cfg: ExperimentConfig, task: TaskModel,
                              cost: Optional[WeightedSumCost] = None) -> List[LinearGaussianController]:
    """One initial controller per condition (``init_controller.type``).

    ``pd_hold``: a PD hold around the start pose, u such that the joints accelerate as
    a = stiffness (q0 − q) − damping q̇ + ε, ε ~ N(0, init_var I), mapped into the command
    interface by :meth:`gps_ros.robot.actuation.Actuation.pd_gains` (effort: through the
    joint-space inertia M at the start pose, Kp = stiffness·M, Kd = damping·M, Σ = init_var·M Mᵀ,
    so that coupled joints (e.g. Panda joints 1 and 3) respond as decoupled second-order systems).
    Gains and noise therefore mean the same on every robot and in every command mode.

    ``lqr``: a first C-step from that PD hold taken on :func:`linear_model` (the arm's inertia
    and end-effector Jacobian at the start pose, from its description) instead of on fitted
    dynamics, KL-bounded like LQR-FLM's (:func:`gps_ros.control.init.lqr_init_controller`): the
    first trials already head for the target instead of exploring around the start; it plans on
    ``cost`` (default: :func:`build_cost`)."""
    ic = cfg.init_controller
    layout = task.layout
    act = actuation(cfg, task)
    if ic.type == "lqr" and cost is None:
        cost = build_cost(cfg, task)
    pos = np.arange(layout.joint_pos.start, layout.joint_pos.stop)
    vel = np.arange(layout.joint_vel.start, layout.joint_vel.stop)
    out = []
    for m in range(len(cfg.agent.conditions)):
        q0 = task.start_pose(m)
        Kq, Kv, k, B = act.pd_gains(task.mass_matrix(q0), ic.stiffness, ic.damping, q0)
        hold = joint_feedback_controller(cfg.agent.T, layout.dX, pos, vel, Kq, Kv, k,
                                         ic.init_var * B @ B.T)
        if ic.type == "lqr":
            x0, Fm = linear_model(cfg, task, m)
            kl = cfg.algorithm.kl_step if ic.lqr_kl_step is None else ic.lqr_kl_step
            hold = lqr_init_controller(Fm, np.zeros(layout.dX), x0, cost, hold, kl * cfg.agent.T,
                                       iterations=ic.lqr_iterations)
        out.append(hold)
    return out


def linear_model(cfg: ExperimentConfig, task: TaskModel, condition: int) -> tuple[np.ndarray, np.ndarray]:
    """A guessed linear model of one control period at the condition's start: (x0, Fm (dX, dXU)).

    The joints move as the command interface's actuator model says
    (:meth:`gps_ros.robot.actuation.Actuation.discrete_model`; effort: the gravity-compensated arm
    M q̈ = u − d q̇ with the inertia M at the start pose and the viscous joint damping d,
    discretised exactly for the zero-order hold); the EE points move with their Jacobian J at the
    start pose (p' = p + J (q' − q), ṗ' = J q̇').  Coriolis forces, the change of M and J along
    the motion, limits and contacts are left out: it is a guess for the first trials, what the
    robot's description gives before any data."""
    layout = task.layout
    x0 = task.initial_state(condition)
    q0 = x0[layout.joint_pos]
    n = q0.shape[0]
    J = task.ee_point_jacobian(q0)
    Ajj, Bj = actuation(cfg, task).discrete_model(task.mass_matrix(q0))   # [q; q̇]' = Ajj [q; q̇] + Bj u
    dX, dU = layout.dX, n
    Fm = np.zeros((dX, dX + dU))
    jp = np.r_[layout.joint_pos.start:layout.joint_pos.stop, layout.joint_vel.start:layout.joint_vel.stop]
    Fm[np.ix_(jp, jp)] = Ajj
    Fm[jp, dX:] = Bj
    dq = np.hstack([Ajj[:n] - np.eye(n, 2 * n), Bj[:n]])     # q' − q = dq [q; q̇; u]
    qd_next = np.hstack([Ajj[n:], Bj[n:]])                   # q̇' = qd_next [q; q̇; u]
    pts, vel = layout.ee_indices, layout.ee_vel_indices
    Fm[pts, pts] = 1.0
    Fm[np.ix_(pts, np.r_[jp, dX:dX + dU])] += J @ dq
    Fm[np.ix_(vel, np.r_[jp, dX:dX + dU])] = J @ qd_next
    return x0, Fm


def task_metrics(task: TaskModel) -> Optional[Callable]:
    """Per-iteration task metrics beyond the EE distance: for the peg task the insertion depth
    (m, mean over the condition's trials at the last step) and the fraction of trials inserted."""
    if task.peg is None:
        return None

    def peg_metrics(valid) -> dict:
        out = [task.insertion(tr.X[:, -1]) for tr in valid]
        return {"insertion_depth": [float(np.mean(d)) for d, _ in out],
                "inserted": [float(np.mean(ok)) for _, ok in out]}

    return peg_metrics
