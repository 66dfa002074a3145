"""What a command does to the joints in one control period, for each command interface.

GPS needs the robot's command units in three places before any data exists: the PD hold that the
first trials explore around, the linear model that the ``lqr`` start plans on, and the action cost.
All three are written here once, in joint *accelerations*, and mapped to each interface's command
``u`` through its (first-order) actuator model over the control period ``dt``:

=========  ==============================================  =======================================
command    what the robot does with ``u``                  ``u`` that asks for acceleration ``a``
=========  ==============================================  =======================================
effort     ``M q̈ = u − d q̇`` (gravity compensated)         ``u = M a``
velocity   reaches ``q̇ = u`` at once: ``q' = q + dt u``    ``u = q̇ + dt a``
position   moves to ``q' = u`` within the period at        ``u = q + dt q̇ + dt² a``
           constant speed: ``q̇' = (u − q) / dt``
=========  ==============================================  =======================================

(the velocity and position rows are the robot's own servo loops as ros2_control's velocity and
position interfaces present them, and what the simulator's motors do: :mod:`gps_ros.sim.arm`).
Writing ``u = A_q q + A_v q̇ + B a`` (:meth:`Actuation.acceleration_map`):

* the PD hold ``a = k_p (q₀ − q) − k_d q̇ + ε`` (gains in (rad/s²)/rad and 1/s, noise ε in rad/s²)
  becomes a linear-Gaussian controller in the interface's units with the same closed loop on
  every robot and in every mode: the gains and noise scale with the robot by construction;
* the action cost ``½ w |a|²`` penalises the acceleration the command asks for
  (``a = B⁻¹ (u − A_q q − A_v q̇)``), the same quantity in every mode;
* :meth:`Actuation.discrete_model` is the exact one-period model of the table (zero-order hold),
  the ``lqr`` start's model of the joints.

In effort mode ``B`` is the joint-space inertia at the start pose (its diagonal for the cost),
so that coupled joints respond as decoupled second-order systems (a diagonal scaling made the
zero-order-hold PD loop at 20 Hz unstable on the Panda's coupled mode).
"""
from __future__ import annotations

import numpy as np

from gps_ros.robot.description import COMMAND_MODES

#: the ros2_control controller that takes each interface's commands as std_msgs/Float64MultiArray
#: on ``<name>/commands`` (ros2_controllers' forward command controllers; the names the UR and
#: other drivers use), the default of the nodes' ``controller`` parameter
CONTROLLERS = {"effort": "effort_controller", "velocity": "forward_velocity_controller",
               "position": "forward_position_controller"}


class Actuation:
    """The actuator model of one command interface (see the module docstring).

    Args:
        command: ``effort``, ``velocity`` or ``position``.
        dt: the control period (s).

        damping: viscous joint damping d (N m s/rad, scalar or per joint) the effort model
            includes (the simulated arm's; a real arm's driver may compensate it).
    """

    def __init__(self, command: str, dt: float, damping: float = 0.0) -> None:
        if command not in COMMAND_MODES:
            raise ValueError(f"command must be one of {COMMAND_MODES}, got {command!r}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.command = command
        self.dt = float(dt)
        self.damping = np.asarray(damping, dtype=np.float64)

    def acceleration_map(self, M: np.ndarray):
        """(A_q, A_v, B), each (n, n): the command ``u = A_q q + A_v q̇ + B a`` that asks for the
        joint accelerations ``a``; ``M`` the joint-space inertia (used in effort mode)."""
        n = M.shape[0]
        I, Z, dt = np.eye(n), np.zeros((n, n)), self.dt
        if self.command == "effort":
            return Z, Z, np.asarray(M, dtype=np.float64)
        if self.command == "velocity":
            return Z, I, dt * I
        return I, dt * I, dt * dt * I

    def pd_gains(self, M: np.ndarray, stiffness: float, damping: float, q0: np.ndarray):
        """(K_q, K_v, k, B) of the PD hold around ``q0`` in the interface's units:
        ``u = K_q q + K_v q̇ + k + B ε`` for ``a = stiffness (q₀ − q) − damping q̇ + ε``."""
        Aq, Av, B = self.acceleration_map(M)
        return Aq - stiffness * B, Av - damping * B, stiffness * B @ np.asarray(q0, float), B

    def action_reference(self, n: int):
        """(A_q, A_v) of the action cost: it penalises ``B⁻¹ (u − A_q q − A_v q̇)``."""
        Aq, Av, _ = self.acceleration_map(np.eye(n))
        return Aq, Av

    def action_scale(self, M: np.ndarray) -> np.ndarray:
        """Per-joint ``B_jj`` of the action cost (effort: the inertia's diagonal ``M_jj``)."""
        _, _, B = self.acceleration_map(M)
        return np.diag(B).copy()

    def discrete_model(self, M: np.ndarray):
        """(A (2n, 2n), B (2n, n)): ``[q; q̇]' = A [q; q̇] + B u`` over one control period."""
        n = M.shape[0]
        I, Z, dt = np.eye(n), np.zeros((n, n)), self.dt
        if self.command == "velocity":
            return np.block([[I, Z], [Z, Z]]), np.vstack([dt * I, I])
        if self.command == "position":
            return np.block([[Z, Z], [-I / dt, Z]]), np.vstack([I, I / dt])
        from scipy.linalg import expm

        # continuous time [q, q̇, u]' = [[0, I, 0], [0, −M⁻¹d, M⁻¹], [0, 0, 0]] [q, q̇, u]
        Minv = np.linalg.inv(M)
        Ac = np.zeros((3 * n, 3 * n))
        Ac[:n, n:2 * n] = I
        Ac[n:2 * n, n:2 * n] = -Minv * self.damping          # M⁻¹ diag(d)
        Ac[n:2 * n, 2 * n:] = Minv
        E = expm(Ac * dt)
        return E[:2 * n, :2 * n], E[:2 * n, 2 * n:]
