"""Any URDF arm in PyBullet, in each command interface, with the robot's gravity compensation.

Physics model (what "the simulated robot" means here)
-----------------------------------------------------
* The robot of ``agent.robot`` (:mod:`gps_ros.robot`): its URDF, loaded with the URDF's own link
  inertias (``URDF_USE_INERTIA_FROM_FILE``, so the rigid-body model built from the same file by
  :class:`gps_ros.robot.RobotModel` *is* the simulated robot; a test compares them on every
  shipped robot), fixed base, ``base_link`` at the world origin, no self-collision (PyBullet's
  default).  The controlled joints (``agent.robot.joints``) take the commands; every other movable
  joint is held at its ``agent.held_joints`` position by a position motor (a gripper's fingers).
* ``agent.robot.command`` chooses what a command ``u`` (n,) is, held over the control period
  (zero-order hold at ``control_rate_hz``, physics substeps at ``physics_rate_hz``):

  - ``effort``: joint torques, ``M(q) q̈ + C(q, q̇) q̇ + g(q) = clip(u, ±τ_max) + g(q) − d q̇`` with
    ``τ_max = torque_limit_scale ×`` the URDF effort limits and ``g(q)`` the gravity compensation
    a torque-controlled arm's firmware adds;
  - ``velocity``: joint velocity targets, reached by PyBullet's velocity motors within a substep
    (up to the effort limits), ``|u| <= velocity_limit_scale ×`` the URDF velocity limits: the
    servo loop of a velocity interface (e.g. a UR's ``forward_velocity_controller``);
  - ``position``: joint position targets, clipped to the joint limits, reached at constant speed
    within the control period (PyBullet's position motors with the speed capped at the distance
    over the period and at the velocity limit, up to the effort limits): the servo loop of a
    position interface.

  :mod:`gps_ros.robot.actuation` models the three to first order for the PD hold, the action cost
  and the ``lqr`` start.
* Joint friction is viscous damping ``-cfg.joint_damping * qdot`` on each controlled joint,
  applied by PyBullet at every substep (``changeDynamics(jointDamping=...)``).  PyBullet's
  default per-link velocity damping is set to zero so that it is the only dissipation.  Its
  explicit integration diverges once ``d * dt / M_jj`` approaches 2, so a joint too light for
  ``joint_damping`` gets less (:data:`gps_ros.task.MAX_DAMPING_RATIO`, with a warning).
* Gravity compensation (``gravity_update``):

  - ``"world"`` (default): gravity is switched off in this PyBullet world.  Since
    ``M q̈ + C q̇ + g(q) = τ + g(q)`` is ``M q̈ + C q̇ = τ``, this is exact, continuous-time
    gravity compensation at no per-substep cost; in the velocity and position interfaces it is
    the robot's own servo loop compensating gravity.  Valid while the arm is the only body with
    mass in the world (true here: scene objects are static or visual only); ``reset`` raises if
    other bodies have been added.
  - ``"substep"`` (effort only): ``g(q)`` from PyBullet's inverse dynamics added to the torque
    command before every physics substep, as a real arm's firmware does (~+55 % time).
  - ``"control"`` (effort only): ``g(q)`` once per control step, held; cheap but a poor model
    while moving (kept for comparison).

State layout (:class:`gps_ros.task.StateLayout`, dX = 2n + 6P, P = len(cfg.ee_points))
--------------------------------------------------------------------------------------
``[q (n), qdot (n), ee points relative to their targets (3P), ee point world velocities (3P)]``.

End-effector points ``p_i`` are given in the frame of ``agent.robot.ee_link``.  The target of
point ``i`` is ``target + R0 p_i`` where ``R0`` is the end-effector orientation at the
condition's start pose, so all points are zero together only when the EE origin is at the target
*and* the hand has its start orientation (:func:`gps_ros.task.ee_targets`).  The first point must
be the EE origin.  The simulator measures the state itself (PyBullet's link state of the EE link,
``v_i = v + w x (x_i - c)`` with ``c`` the link's centre of mass); the robot model computes the
same from joint states on a real arm (:meth:`gps_ros.task.TaskModel.state`).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import numpy as np
import pybullet as p

from gps_ros.config import AgentConfig
from gps_ros.robot import RobotError
from gps_ros.sim.camera import Camera
from gps_ros.task import StateLayout, TaskModel, ee_targets

log = logging.getLogger(__name__)

GRAVITY = -9.81
GRAVITY_UPDATES = ("substep", "world", "control")


def _check_gravity_update(mode: str, command: str, compensated: bool) -> None:
    if mode not in GRAVITY_UPDATES:
        raise ValueError(f"gravity_update must be 'substep', 'world' or 'control', got {mode!r}")
    if mode != "world" and compensated and command != "effort":
        raise ValueError(f"gravity_update {mode!r} adds gravity torques to effort commands; a "
                         f"{command} interface compensates gravity in the robot's own servo loop: "
                         "use gravity_update 'world'")


@dataclass(frozen=True)
class SceneConfig:
    """Optional visual scene for camera observations.

    ``ArmSim(..., scene=SceneConfig())``.  Adds *visual-only* PyBullet bodies (no collision
    shape, no mass, so the dynamics are unchanged): an object (``"cube"``: axis-aligned, edge ``object_size``; ``"sphere"``: diameter
    ``object_size``; ``"none"``) placed at each condition's target on ``reset``, and a table top
    (a thin box of ``table_size`` centred at ``table_center``, top face at ``table_height``).
    With a scene the translucent target marker is not shown (the object marks the target).
    Used by :class:`gps_ros.sim.camera.Camera`.
    """

    object_shape: Literal["cube", "sphere", "none"] = "cube"
    object_size: float = 0.04
    object_rgba: Tuple[float, float, float, float] = (0.9, 0.1, 0.1, 1.0)
    table: bool = True
    table_height: float = 0.0
    table_center: Tuple[float, float] = (0.45, 0.0)
    table_size: Tuple[float, float] = (1.0, 1.2)
    table_rgba: Tuple[float, float, float, float] = (0.55, 0.42, 0.30, 1.0)


class ArmSim:
    """One PyBullet world with the configured robot; see the module docstring.

    Args:
        cfg: the agent section (robot, rates, conditions, EE points, scene, peg).
        gravity_update: ``"world"``, ``"substep"`` or ``"control"`` (default: the config's).
        scene: visual scene objects for the camera.
        task: the :class:`~gps_ros.task.TaskModel` of ``cfg`` if already built (it is shared).
    """

    def __init__(self, cfg: AgentConfig,
                 gravity_update: Optional[Literal["substep", "world", "control"]] = None,
                 scene: Optional[SceneConfig] = None, task: Optional[TaskModel] = None) -> None:
        if gravity_update is None:  # from the config (AgentConfig.gravity_update)
            gravity_update = cfg.gravity_update
        self.cfg = cfg
        self.task = task if task is not None else TaskModel(cfg)
        desc = self.task.description
        if desc.missing_meshes:
            raise RobotError(f"agent.robot.urdf: {desc.source}: mesh files not found: "
                             f"{', '.join(desc.missing_meshes)}")
        self.description = desc
        self.command = desc.command
        _check_gravity_update(gravity_update, self.command, cfg.gravity_compensation)
        self.ee_points_local = self.task.ee_points_local
        self.layout: StateLayout = self.task.layout
        self.dX = self.layout.dX
        self.dU = self.task.dU
        self.n_substeps = self.task.n_substeps
        self.dt_physics = 1.0 / cfg.physics_rate_hz
        self.dt = self.n_substeps * self.dt_physics  # control period
        self._gravity = bool(cfg.gravity_compensation)
        self._gravity_update = "substep"

        self._cid = p.connect(p.GUI if cfg.gui else p.DIRECT)
        if self._cid < 0:
            raise RuntimeError("could not connect to PyBullet" + (" GUI (is there a display?)" if cfg.gui else ""))
        cid = self._cid
        try:
            if cfg.gui:
                p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=cid)
            p.setTimeStep(self.dt_physics, physicsClientId=cid)
            p.setGravity(0.0, 0.0, GRAVITY, physicsClientId=cid)
            self.peg = cfg.peg
            self._robot = self._load_robot()
            self._setup_robot()
            vis = p.createVisualShape(p.GEOM_SPHERE, radius=0.02, rgbaColor=[0.1, 0.9, 0.1, 0.6],
                                      physicsClientId=cid)
            self._marker = p.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=-1,
                                             baseVisualShapeIndex=vis, basePosition=[0, 0, -10],
                                             physicsClientId=cid)
            self.scene = scene
            self.scene_bodies: dict = {}
            if scene is not None:
                self._add_scene(scene)
            if cfg.peg is not None:
                from gps_ros.sim import peg as _peg

                # static bodies (mass 0): the arm stays the only body with mass
                self.scene_bodies["block"] = _peg.build_block(cid, cfg.peg)
                if "table" in self.scene_bodies:          # the visual-only table is replaced
                    p.removeBody(self.scene_bodies.pop("table"), physicsClientId=cid)
                self.scene_bodies["table"] = _peg.build_table(cid, cfg.peg)
        except Exception:
            p.disconnect(physicsClientId=cid)
            raise

        self.gravity_update = gravity_update  # validates; sets the world's gravity

        # per-condition start poses, EE start orientations and point targets (filled lazily)
        self._cond_cache: dict[int, tuple[list, np.ndarray, np.ndarray]] = {}
        self.condition = -1
        self.target = np.zeros(3)
        self.ee_targets = np.zeros((len(self.ee_points_local), 3))
        self._point_pairs: list = []
        self._wall_next = 0.0
        self._closed = False
        self._camera = None
        self._capsules = None

    def _load_robot(self) -> int:
        """Load the robot's URDF (the task model's: with the peg link on the EE link when
        ``cfg.peg`` is set), ``base_link`` at the world origin."""
        from gps_ros.robot.description import massless_without_inertial

        desc = self.description
        urdf = massless_without_inertial(desc.urdf)
        from scipy.spatial.transform import Rotation

        Rb, tb = self.task.robot.base_in_root()
        self.root_pose = (-Rb.T @ tb, Rb.T)              # the URDF root link in the world
        pos = self.root_pose[0].tolist()
        orn = Rotation.from_matrix(Rb.T).as_quat()       # xyzw, PyBullet's order
        tmp = tempfile.mkdtemp(prefix="gps_ros_robot_")
        try:
            path = os.path.join(tmp, "robot.urdf")
            with open(path, "w") as f:
                f.write(urdf)
            try:
                return p.loadURDF(path, basePosition=pos, baseOrientation=list(orn), useFixedBase=True,
                                  flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=self._cid)
            except p.error as err:
                raise RobotError(f"agent.robot.urdf: PyBullet cannot load {desc.source}: {err}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _add_scene(self, scene: SceneConfig) -> None:
        """Visual-only bodies for the camera (see :class:`SceneConfig`)."""
        cid = self._cid
        if scene.object_shape not in ("cube", "sphere", "none"):
            raise ValueError(f"scene.object_shape must be 'cube', 'sphere' or 'none', got {scene.object_shape!r}")
        if scene.object_shape != "none":
            h = 0.5 * float(scene.object_size)
            if scene.object_shape == "cube":
                vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[h, h, h],
                                          rgbaColor=list(scene.object_rgba), physicsClientId=cid)
            else:
                vis = p.createVisualShape(p.GEOM_SPHERE, radius=h, rgbaColor=list(scene.object_rgba),
                                          physicsClientId=cid)
            self.scene_bodies["object"] = p.createMultiBody(
                baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vis,
                basePosition=[0, 0, -10], physicsClientId=cid)
        if scene.table:
            sx, sy = scene.table_size
            th = 0.01
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[0.5 * sx, 0.5 * sy, th],
                                      rgbaColor=list(scene.table_rgba), physicsClientId=cid)
            cx, cy = scene.table_center
            self.scene_bodies["table"] = p.createMultiBody(
                baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vis,
                basePosition=[cx, cy, scene.table_height - th], physicsClientId=cid)

    @property
    def capsules(self):
        """The robot's capsules for the fast camera (:func:`gps_ros.robot.capsules.robot_capsules`)."""
        if self._capsules is None:
            from gps_ros.robot.capsules import robot_capsules

            self._capsules = robot_capsules(self.description)
        return self._capsules

    def render(self, camera=None) -> np.ndarray:
        """RGB image (H, W, 3) uint8 of the current state from ``camera`` (a
        :class:`gps_ros.sim.camera.Camera`; default: a 64x64 fast camera, created once)."""
        if camera is None:
            if self._camera is None:
                self._camera = Camera()
            camera = self._camera
        return camera.render(self)

    # ----------------------------------------------------------------------------------------
    @property
    def gravity_update(self) -> str:
        """``"substep"``, ``"world"`` or ``"control"``; see the module docstring."""
        return self._gravity_update

    @gravity_update.setter
    def gravity_update(self, mode: str) -> None:
        _check_gravity_update(mode, self.command, self._gravity)
        self._gravity_update = mode
        gz = 0.0 if (self._gravity and mode == "world") else GRAVITY
        p.setGravity(0.0, 0.0, gz, physicsClientId=self._cid)

    # ----------------------------------------------------------------------------------------
    def _setup_robot(self) -> None:
        cid, r = self._cid, self._robot
        names, links = {}, {}
        for j in range(p.getNumJoints(r, physicsClientId=cid)):
            info = p.getJointInfo(r, j, physicsClientId=cid)
            names[info[1].decode()] = j
            links[info[12].decode()] = j
        desc = self.description
        self.link_index = links                                # link name -> PyBullet index
        self._arm = [names[n] for n in desc.joints]
        self._held = [names[n] for n in desc.held]
        self._held_q = [float(v) for v in desc.held.values()]
        self._held_force = [float(desc.joint_info[n].effort) for n in desc.held]
        self.ee_index = links[desc.ee_link] if desc.ee_link in links else -1
        # all movable joints in PyBullet's DoF order (what calculateMassMatrix / ID take)
        self._dofs = sorted(self._arm + self._held)
        self._dof_arm = [self._dofs.index(j) for j in self._arm]
        model = self.task.robot                                # the URDF's limits (a continuous
        self.joint_lower, self.joint_upper = model.lower, model.upper     # joint: +-inf)
        self.torque_limits = self.cfg.torque_limit_scale * model.effort_limit
        self.velocity_limits = self.cfg.velocity_limit_scale * model.velocity_limit
        self._tlim = self.torque_limits.copy()
        self._ntlim = -self.torque_limits
        self._vlim = self.velocity_limits.copy()
        self._forces = self.torque_limits.tolist()
        for j in range(p.getNumJoints(r, physicsClientId=cid)):
            p.changeDynamics(r, j, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        p.changeDynamics(r, -1, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        # per-joint damping, capped where a light joint would make PyBullet's explicit damping
        # unstable (gps_ros.task.MAX_DAMPING_RATIO)
        for j, d in zip(self._arm, self.task.joint_damping):
            p.changeDynamics(r, j, jointDamping=float(d), physicsClientId=cid)
        self._free_arm()
        self._zeros_dofs = [0.0] * len(self._dofs)

    def _free_arm(self) -> None:
        """Effort mode: free the controlled joints from PyBullet's default velocity motors."""
        if self.command == "effort":
            p.setJointMotorControlArray(self._robot, self._arm, p.VELOCITY_CONTROL,
                                        forces=[0.0] * len(self._arm), physicsClientId=self._cid)

    def _condition_data(self, condition: int) -> tuple[list, np.ndarray, np.ndarray]:
        if condition in self._cond_cache:
            return self._cond_cache[condition]
        q0 = self.task.start_pose(condition).tolist()
        self._set_joints(q0)
        ls = p.getLinkState(self._robot, self.ee_index, computeForwardKinematics=1,
                            physicsClientId=self._cid)
        R0 = np.asarray(p.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
        target = np.asarray(self.cfg.conditions[condition].target, dtype=np.float64)
        self._cond_cache[condition] = (q0, target, ee_targets(target, R0, self.ee_points_local, self.peg))
        return self._cond_cache[condition]

    def _set_joints(self, q0) -> None:
        cid, r = self._cid, self._robot
        for j, q in zip(self._arm, q0):
            p.resetJointState(r, j, float(q), 0.0, physicsClientId=cid)
        for j, q in zip(self._held, self._held_q):
            p.resetJointState(r, j, q, 0.0, physicsClientId=cid)

    def pose_scene(self, joint_positions, object_position) -> None:
        """Put the arm at ``joint_positions`` (n,) at rest and the scene object (the target) at
        ``object_position`` (3,) without starting a trial: for rendering camera frames of arbitrary
        scenes (vision pretraining).  The next :meth:`reset` restores a condition."""
        self._check_open()
        q = np.asarray(joint_positions, dtype=np.float64)
        if q.shape != (self.dU,) or not np.isfinite(q).all():
            raise ValueError(f"joint_positions must be {self.dU} finite numbers, got {q!r}")
        target = np.asarray(object_position, dtype=np.float64)
        if target.shape != (3,) or not np.isfinite(target).all():
            raise ValueError(f"object_position must be 3 finite numbers, got {target!r}")
        self._set_joints(q)
        self.target = target
        self._place_objects(target)

    def ee_point_jacobian(self, q) -> np.ndarray:
        """d(EE points)/dq (3·n_points, n) at joint positions ``q`` (the robot model's)."""
        return self.task.ee_point_jacobian(q)

    def _place_objects(self, target: np.ndarray) -> None:
        """Move the scene object (reach) or the block with the hole (peg) to ``target``."""
        for name in ("object", "block"):
            if name in self.scene_bodies:
                p.resetBasePositionAndOrientation(self.scene_bodies[name], target.tolist(),
                                                  [0, 0, 0, 1], physicsClientId=self._cid)

    # ----------------------------------------------------------------------------------------
    def reset(self, condition: int, _retry: bool = True) -> np.ndarray:
        """Put the arm at the condition's start pose at rest; set the target; return the state."""
        self._check_open()
        q0, target, ee_targets_ = self._condition_data(int(condition))
        cid, r = self._cid, self._robot
        if (self._gravity and self._gravity_update == "world"
                and p.getNumBodies(physicsClientId=cid) != 2 + len(self.scene_bodies)):
            raise RuntimeError("gravity_update='world' compensates gravity by switching it off in the "
                               "world, so it needs the arm to be the only body; other bodies were added: "
                               "use gravity_update='substep'")
        self._set_joints(q0)
        self._free_arm()
        if self.command == "velocity":
            p.setJointMotorControlArray(r, self._arm, p.VELOCITY_CONTROL,
                                        targetVelocities=[0.0] * self.dU, forces=self._forces,
                                        physicsClientId=cid)
        elif self.command == "position":
            self._position_targets(np.asarray(q0, dtype=np.float64), np.asarray(q0, dtype=np.float64))
        if self._held:
            p.setJointMotorControlArray(r, self._held, p.POSITION_CONTROL, targetPositions=self._held_q,
                                        forces=self._held_force, physicsClientId=cid)
        show_marker = self.scene is None and self.peg is None
        p.resetBasePositionAndOrientation(self._marker, target.tolist() if show_marker else [0, 0, -10],
                                          [0, 0, 0, 1], physicsClientId=cid)
        self._place_objects(target)
        self.condition = int(condition)
        self.target = target
        self.ee_targets = ee_targets_
        self._point_pairs = [(tuple(a), tuple(b)) for a, b in
                             zip(self.ee_points_local.tolist(), ee_targets_.tolist())]
        self._wall_next = time.perf_counter()
        x = self.state()
        if _retry and not np.isfinite(x).all():  # a corrupted world: rebuild the robot
            log.warning("non-finite state after reset; reloading the robot")
            p.removeBody(r, physicsClientId=cid)
            self._robot = self._load_robot()
            self._setup_robot()
            self._cond_cache.clear()
            return self.reset(condition, _retry=False)
        return x

    def _position_targets(self, u: np.ndarray, q: np.ndarray) -> None:
        """Position motors toward ``u``, at the speed that gets there in one control period
        (capped at the velocity limits)."""
        cid, r = self._cid, self._robot
        speed = np.minimum(np.abs(u - q) / self.dt, self._vlim)
        for j, uj, v, f in zip(self._arm, u.tolist(), speed.tolist(), self._forces):
            p.setJointMotorControl2(r, j, p.POSITION_CONTROL, targetPosition=uj, force=f,
                                    positionGain=1.0, velocityGain=1.0, maxVelocity=max(v, 1e-9),
                                    physicsClientId=cid)

    def hold_command(self) -> np.ndarray:
        """The command that holds the arm where it is: zero torque (gravity is compensated), zero
        velocity, or the current joint positions."""
        if self.command == "position":
            return np.array([s[0] for s in p.getJointStates(self._robot, self._arm, physicsClientId=self._cid)])
        return np.zeros(self.dU)

    def clip_command(self, u) -> np.ndarray:
        """The command as the simulated robot takes it: torques and velocities clipped to their
        limits, positions to the joint limits."""
        ua = np.asarray(u, dtype=np.float64)
        if self.command == "effort":
            return np.minimum(np.maximum(ua, self._ntlim), self._tlim)
        if self.command == "velocity":
            return np.clip(ua, -self._vlim, self._vlim)
        return np.clip(ua, self.joint_lower, self.joint_upper)

    def step(self, u: np.ndarray) -> np.ndarray:
        """Apply the command ``u`` (n,) for one control period; return the new state (dX,).

        ``u`` is clipped to the robot's limits (:meth:`clip_command`); a non-finite ``u`` raises
        ``ValueError`` (nothing non-finite is ever passed to PyBullet).
        """
        if self.condition < 0:
            raise RuntimeError("call reset(condition) before step()")
        ua = np.asarray(u, dtype=np.float64)
        if ua.shape != (self.dU,):
            raise ValueError(f"action must have shape ({self.dU},), got {ua.shape}")
        if not np.isfinite(ua).all():
            raise ValueError(f"non-finite action {ua}")
        cid, r, arm = self._cid, self._robot, self._arm
        step_sim = p.stepSimulation
        if self.command == "velocity":
            p.setJointMotorControlArray(r, arm, p.VELOCITY_CONTROL, targetVelocities=self.clip_command(ua).tolist(),
                                        forces=self._forces, physicsClientId=cid)
            for _ in range(self.n_substeps):
                step_sim(physicsClientId=cid)
        elif self.command == "position":
            q = np.array([s[0] for s in p.getJointStates(r, arm, physicsClientId=cid)])
            self._position_targets(self.clip_command(ua), q)
            for _ in range(self.n_substeps):
                step_sim(physicsClientId=cid)
        else:
            ul = np.minimum(np.maximum(ua, self._ntlim), self._tlim).tolist()
            torque, set_ctrl = p.TORQUE_CONTROL, p.setJointMotorControlArray
            if not self._gravity or self._gravity_update == "world":
                for _ in range(self.n_substeps):
                    set_ctrl(r, arm, torque, forces=ul, physicsClientId=cid)
                    step_sim(physicsClientId=cid)
            elif self._gravity_update == "control":
                g = self._gravity_torque()
                tau = [a + b for a, b in zip(ul, g)]
                for _ in range(self.n_substeps):
                    set_ctrl(r, arm, torque, forces=tau, physicsClientId=cid)
                    step_sim(physicsClientId=cid)
            else:
                for _ in range(self.n_substeps):
                    g = self._gravity_torque()
                    set_ctrl(r, arm, torque, forces=[a + b for a, b in zip(ul, g)], physicsClientId=cid)
                    step_sim(physicsClientId=cid)
        if self.cfg.gui:
            self._wall_next += self.dt
            delay = self._wall_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self._wall_next = time.perf_counter()
        return self.state()

    def _gravity_torque(self) -> list:
        """g(q) for the arm: PyBullet's inverse dynamics at the current q, zero velocity and
        acceleration (what the ``substep`` and ``control`` gravity updates add)."""
        cid, r = self._cid, self._robot
        q = [s[0] for s in p.getJointStates(r, self._dofs, physicsClientId=cid)]
        tau = p.calculateInverseDynamics(r, q, self._zeros_dofs, self._zeros_dofs, physicsClientId=cid)
        return [tau[i] for i in self._dof_arm]

    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia M(q) (n, n) of the controlled joints (the robot model's)."""
        return self.task.mass_matrix(q)

    def gravity_torque(self) -> np.ndarray:
        """The gravity torque g(q) (n,) at the current configuration (the robot model's)."""
        q = [s[0] for s in p.getJointStates(self._robot, self._arm, physicsClientId=self._cid)]
        return self.task.robot.gravity(q)

    def state(self) -> np.ndarray:
        """The current state vector (dX,); see the module docstring for the layout."""
        # Plain-Python arithmetic on PyBullet's tuples: for a handful of 3-vectors this is about
        # twice as fast as building small numpy arrays.
        if self._closed:
            raise RuntimeError("simulator is closed")
        cid, r = self._cid, self._robot
        js = p.getJointStates(r, self._arm, physicsClientId=cid)
        ls = p.getLinkState(r, self.ee_index, computeLinkVelocity=1, computeForwardKinematics=1,
                            physicsClientId=cid)
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = p.getMatrixFromQuaternion(ls[5])
        px, py, pz = ls[4]  # EE frame origin
        cx, cy, cz = ls[0]  # link COM, where the linear velocity ls[6] is given
        vx, vy, vz = ls[6]
        wx, wy, wz = ls[7]
        dx, dy, dz = px - cx, py - cy, pz - cz
        out = [a[0] for a in js]
        out += [a[1] for a in js]
        vel = []
        for (lx, ly, lz), (tx, ty, tz) in self._point_pairs:
            ox = r00 * lx + r01 * ly + r02 * lz  # R p_i
            oy = r10 * lx + r11 * ly + r12 * lz
            oz = r20 * lx + r21 * ly + r22 * lz
            out += (px + ox - tx, py + oy - ty, pz + oz - tz)
            ax, ay, az = dx + ox, dy + oy, dz + oz  # point relative to the COM
            vel += (vx + wy * az - wz * ay, vy + wz * ax - wx * az, vz + wx * ay - wy * ax)
        out += vel
        return np.array(out)

    # ----------------------------------------------------------------------------------------
    def ee_distance(self, X) -> np.ndarray:
        """Distance of the EE origin to the target, from state(s) ``X`` (..., dX) -> (...)."""
        return self.task.ee_distance(X)

    def ik_gripper_down(self, goal, rest_pose) -> np.ndarray:
        """Joint positions (n,) that put the EE origin at ``goal`` (3,) with the EE frame's z axis
        pointing straight down (PyBullet's damped least-squares IK, iterated from ``rest_pose``;
        the arm is left at the result).  For start poses above a hole and scripted insertions
        (bench/bench_peg_contact.py, the peg tests)."""
        orn = p.getQuaternionFromEuler([np.pi, 0, 0])
        rest = [0.0] * len(self._dofs)
        for i, v in zip(self._dof_arm, rest_pose):
            rest[i] = float(v)
        for j, v in zip(self._held, self._held_q):
            rest[self._dofs.index(j)] = v
        for _ in range(20):
            sol = p.calculateInverseKinematics(self._robot, self.ee_index, [float(v) for v in goal], orn,
                                               restPoses=rest, maxNumIterations=200,
                                               residualThreshold=1e-7, physicsClientId=self._cid)
            q = [sol[i] for i in self._dof_arm]
            self._set_joints(q)
        return np.array(q)

    def insertion(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Peg task: (insertion depth in m, inserted?) from state(s) ``X`` (..., dX); see
        :func:`gps_ros.sim.peg.insertion`."""
        return self.task.insertion(X)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and quaternion xyzw (4,) of the EE frame."""
        ls = p.getLinkState(self._robot, self.ee_index, computeForwardKinematics=1, physicsClientId=self._cid)
        return np.asarray(ls[4]), np.asarray(ls[5])

    @property
    def physics_client(self) -> int:
        return self._cid

    @property
    def robot(self) -> int:
        return self._robot

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("simulator is closed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                p.disconnect(physicsClientId=self._cid)
            except p.error:  # already disconnected
                pass

    def __enter__(self) -> "ArmSim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
