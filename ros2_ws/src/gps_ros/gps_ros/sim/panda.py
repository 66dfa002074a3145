"""PyBullet Franka Panda reaching task under joint-torque control.

Physics model (what a "torque-controlled arm" means here)
--------------------------------------------------------
* ``franka_panda/panda.urdf`` from ``pybullet_data``, fixed base at the world origin, no ground
  plane, no self-collision (PyBullet's default), inertias computed by PyBullet from the collision
  shapes (PyBullet's default; the URDF's own 0.1 kg m^2 placeholders are not used).
* Arm joints 0..6 are torque controlled (dU = 7).  Their default velocity motors are disabled
  (``VELOCITY_CONTROL`` with force 0).  The two finger joints are held open (0.04 m) by their own
  position motors and are not part of the state.
* The arm obeys ``M(q) qdd + C(q, qdot) qdot + g(q) = tau`` with

      tau = clip(u, -torque_limits, torque_limits) + g(q) - cfg.joint_damping * qdot

  ``torque_limits = cfg.torque_limit_scale * URDF effort limits`` (87 N m joints 1-4, 12 N m
  joints 5-7).  ``g(q)`` is the gravity compensation a real torque-controlled arm's firmware adds,
  i.e. inverse dynamics at the current ``q`` with zero velocity and acceleration
  (``p.calculateInverseDynamics``); ``cfg.gravity_compensation = False`` leaves it out.  ``u`` is
  held constant over the control period (zero-order hold at ``cfg.control_rate_hz``); physics
  substeps run at ``cfg.physics_rate_hz`` (``setTimeStep``), ``physics/control`` per step.
* Joint friction is modelled as viscous damping ``-cfg.joint_damping * qdot`` on each arm joint.
  It is applied by PyBullet itself at every substep (``changeDynamics(jointDamping=...)``, which
  adds exactly ``-d * qdot`` as a joint torque before each step; this was checked to produce the
  same trajectory as adding the term to the commanded torque by hand, and it saves a joint-state
  read per substep).  PyBullet's default per-link linear/angular velocity damping (0.04) is set
  to zero so that ``joint_damping`` is the only dissipation.
* How ``g(q)`` is applied (constructor argument ``gravity_update``):

  - ``"substep"``: ``p.calculateInverseDynamics(q, 0, 0)`` at the current ``q`` added to the
    torque command before every physics substep, as a real arm's firmware does.  Costs one
    joint-state read and one inverse-dynamics call per substep (~+55 % over bare
    ``stepSimulation``, against +10-15 % for ``"world"``; see ``bench/bench_sim.py``).
  - ``"world"`` (default): gravity is switched off in this PyBullet world instead.  Since
    ``M qdd + C qdot + g(q) = tau + g(q)`` is ``M qdd + C qdot = tau``, this is *exact*,
    continuous-time gravity compensation (the ``"substep"`` mode is its sample-and-hold
    approximation; the two differ by < 0.01 mm of EE position over a 5 s trial with fast
    motion) at no per-substep cost.  Valid only while the arm is the only body with mass in the
    world (true here: the target marker has neither mass nor collision); ``reset`` raises if
    other bodies have been added to the world.  ``gravity_torque()`` still reports ``g(q)``.
  - ``"control"``: ``g(q)`` computed once per control step and held (20 Hz gravity
    compensation).  Cheap, exact at rest, but a poor model while moving: at joint speeds of
    1-3 rad/s the one-step velocity error is 10-50 % of the velocity change per step, and
    open-loop trajectories diverge by decimetres.  Kept for comparison; not recommended.

State layout (dX = 7 + 7 + 3P + 3P, P = len(cfg.ee_points))
-------------------------------------------------------------
``[q (7), qdot (7), ee points relative to their targets (3P), ee point world velocities (3P)]``.

End-effector points ``p_i`` are given in the frame of link 11 ``panda_grasptarget``.  The target of
point ``i`` is ``target + R0 p_i`` where ``R0`` is the end-effector orientation at the condition's
start pose, so all points are zero together only when the EE origin is at the target *and* the
hand has its start orientation.  The first point must be the EE origin ``(0, 0, 0)``; its entry is
the EE origin's position minus the target.  Velocities: ``v_i = v + w x (x_i - c)`` from
``getLinkState(computeLinkVelocity=1)`` (``c`` the link's COM, which for this massless link
coincides with its frame origin).  All kinematics come from PyBullet.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import numpy as np
import pybullet as p
import pybullet_data

from gps_ros.config import AgentConfig
from gps_ros.sim.camera import Camera

log = logging.getLogger(__name__)

ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
FINGER_JOINTS = (9, 10)
EE_LINK = 11  # panda_grasptarget
FINGER_OPEN = 0.04
GRAVITY = -9.81
URDF = "franka_panda/panda.urdf"


@dataclass(frozen=True)
class StateLayout:
    """Where each quantity lives in the state vector."""

    joint_pos: slice
    joint_vel: slice
    ee_points: slice
    ee_vel: slice
    dX: int
    n_points: int

    @staticmethod
    def for_points(n_points: int, n_joints: int = 7) -> "StateLayout":
        a = n_joints
        b = a + n_joints
        c = b + 3 * n_points
        d = c + 3 * n_points
        return StateLayout(slice(0, a), slice(a, b), slice(b, c), slice(c, d), d, n_points)

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


@dataclass(frozen=True)
class SceneConfig:
    """Optional visual scene for camera observations (``PandaReachSim(..., scene=SceneConfig())``).

    Adds *visual-only* PyBullet bodies (no collision shape, no mass, so the dynamics are
    unchanged): an object (``"cube"``: axis-aligned, edge ``object_size``; ``"sphere"``: diameter
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


class PandaReachSim:
    """One PyBullet world with a torque-controlled Panda; see the module docstring."""

    def __init__(self, cfg: AgentConfig,
                 gravity_update: Optional[Literal["substep", "world", "control"]] = None,
                 scene: Optional[SceneConfig] = None) -> None:
        if gravity_update is None:  # from the config (AgentConfig.gravity_update)
            gravity_update = cfg.gravity_update
        if gravity_update not in ("substep", "world", "control"):
            raise ValueError(f"gravity_update must be 'substep', 'world' or 'control', got {gravity_update!r}")
        self.cfg = cfg
        pts = np.asarray(cfg.ee_points, dtype=np.float64).reshape(-1, 3)
        if np.any(pts[0] != 0.0):
            raise ValueError(f"agent.ee_points[0] must be the EE origin (0, 0, 0), got {tuple(pts[0])}")
        for i, c in enumerate(cfg.conditions):
            if c.start_joint_positions is not None and len(c.start_joint_positions) != 7:
                raise ValueError(f"conditions[{i}].start_joint_positions needs 7 values, "
                                 f"got {len(c.start_joint_positions)}")
        if len(cfg.start_joint_positions) != 7:
            raise ValueError(f"agent.start_joint_positions needs 7 values, got {len(cfg.start_joint_positions)}")

        self.ee_points_local = pts
        self.layout = StateLayout.for_points(len(pts))
        self.dX = self.layout.dX
        self.dU = len(ARM_JOINTS)
        self.n_substeps = int(round(cfg.physics_rate_hz / cfg.control_rate_hz))
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
            self._finger = FINGER_OPEN if cfg.peg is None else min(FINGER_OPEN, float(cfg.peg.radius))
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
                self._tip_index = next(i for i, pt in enumerate(pts)
                                       if np.allclose(pt, [0.0, 0.0, cfg.peg.tip]))
        except Exception:
            p.disconnect(physicsClientId=cid)
            raise

        self.gravity_update = gravity_update  # validates; sets the world's gravity

        # per-condition start poses, EE start orientations and point targets (filled lazily)
        self._cond_cache: dict[int, tuple[list, np.ndarray, np.ndarray]] = {}
        self.condition = -1
        self.target = np.zeros(3)
        self.ee_targets = np.zeros((len(pts), 3))
        self._point_pairs: list = []
        self._wall_next = 0.0
        self._closed = False
        self._camera = None

    def _load_robot(self) -> int:
        """Load the Panda (with the peg link appended when ``cfg.peg`` is set)."""
        if self.peg is None:
            return p.loadURDF(f"{pybullet_data.getDataPath()}/{URDF}", basePosition=[0, 0, 0],
                              useFixedBase=True, physicsClientId=self._cid)
        import shutil
        import tempfile

        from gps_ros.sim.peg import peg_urdf

        tmp = tempfile.mkdtemp(prefix="gps_ros_peg_")
        try:
            return p.loadURDF(peg_urdf(self.peg, tmp), basePosition=[0, 0, 0], useFixedBase=True,
                              physicsClientId=self._cid)
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
        if mode not in ("substep", "world", "control"):
            raise ValueError(f"gravity_update must be 'substep', 'world' or 'control', got {mode!r}")
        self._gravity_update = mode
        gz = 0.0 if (self._gravity and mode == "world") else GRAVITY
        p.setGravity(0.0, 0.0, gz, physicsClientId=self._cid)

    # ----------------------------------------------------------------------------------------
    def _setup_robot(self) -> None:
        cid, r = self._cid, self._robot
        info = [p.getJointInfo(r, j, physicsClientId=cid) for j in ARM_JOINTS]
        self.joint_lower = np.array([i[8] for i in info])
        self.joint_upper = np.array([i[9] for i in info])
        self.torque_limits = self.cfg.torque_limit_scale * np.array([i[10] for i in info])
        self._tlim = self.torque_limits.copy()
        self._ntlim = -self.torque_limits
        self._arm = list(ARM_JOINTS)
        self._dofs = list(ARM_JOINTS) + list(FINGER_JOINTS)  # all movable joints, in DoF order
        for j in range(p.getNumJoints(r, physicsClientId=cid)):
            p.changeDynamics(r, j, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        p.changeDynamics(r, -1, linearDamping=0.0, angularDamping=0.0, physicsClientId=cid)
        for j in ARM_JOINTS:
            p.changeDynamics(r, j, jointDamping=float(self.cfg.joint_damping), physicsClientId=cid)
        # free the arm joints for torque control
        p.setJointMotorControlArray(r, self._arm, p.VELOCITY_CONTROL, forces=[0.0] * 7,
                                    physicsClientId=cid)
        self._zeros9 = [0.0] * len(self._dofs)

        # Stability of the explicit joint damping: PyBullet applies -d*qdot with the velocity at the
        # start of each substep, which diverges once d * dt / M_jj approaches 2.  The wrist (joint 7,
        # M_77 ~ 0.0045 kg m^2) is the limit: d = 0.5 gives 0.46 at 240 Hz, d ~ 2 is marginal,
        # d = 5 blows up.  Raise physics_rate_hz if you need more damping.
        q0 = list(self.cfg.start_joint_positions) + [self._finger, self._finger]
        M = np.asarray(p.calculateMassMatrix(r, q0, physicsClientId=cid))
        self.joint_inertia = np.diag(M)[:7].copy()
        ratio = self.cfg.joint_damping * self.dt_physics / self.joint_inertia
        if ratio.max() > 1.0:
            log.warning("joint_damping %.3g is too stiff for joint %d at %.0f Hz physics "
                        "(d*dt/M = %.2f; explicit damping %s above ~2): lower joint_damping or raise "
                        "physics_rate_hz", self.cfg.joint_damping, int(ratio.argmax()) + 1,
                        self.cfg.physics_rate_hz, ratio.max(),
                        "diverges" if ratio.max() >= 2 else "oscillates, and diverges")

    def _condition_data(self, condition: int) -> tuple[list, np.ndarray, np.ndarray]:
        if condition in self._cond_cache:
            return self._cond_cache[condition]
        if not 0 <= condition < len(self.cfg.conditions):
            raise IndexError(f"condition {condition} out of range (have {len(self.cfg.conditions)})")
        c = self.cfg.conditions[condition]
        q0 = list(c.start_joint_positions if c.start_joint_positions is not None
                  else self.cfg.start_joint_positions)
        self._set_joints(q0)
        ls = p.getLinkState(self._robot, EE_LINK, computeForwardKinematics=1, physicsClientId=self._cid)
        R0 = np.asarray(p.getMatrixFromQuaternion(ls[5])).reshape(3, 3)
        target = np.asarray(c.target, dtype=np.float64)
        if self.peg is not None:           # target = hole opening; EE targets at full insertion
            from gps_ros.sim.peg import ee_target

            ee_targets = ee_target(target, R0, self.peg) + self.ee_points_local @ R0.T
        else:
            ee_targets = target + self.ee_points_local @ R0.T
        self._cond_cache[condition] = (q0, target, ee_targets)
        return self._cond_cache[condition]

    def _set_joints(self, q0) -> None:
        cid, r = self._cid, self._robot
        for j, q in zip(ARM_JOINTS, q0):
            p.resetJointState(r, j, float(q), 0.0, physicsClientId=cid)
        for j in FINGER_JOINTS:
            p.resetJointState(r, j, self._finger, 0.0, physicsClientId=cid)

    def pose_scene(self, joint_positions, object_position) -> None:
        """Put the arm at ``joint_positions`` (7,) at rest and the scene object (the target) at
        ``object_position`` (3,) without starting a trial: for rendering camera frames of arbitrary
        scenes (vision pretraining).  The next :meth:`reset` restores a condition."""
        self._check_open()
        q = np.asarray(joint_positions, dtype=np.float64)
        if q.shape != (7,) or not np.isfinite(q).all():
            raise ValueError(f"joint_positions must be 7 finite numbers, got {q!r}")
        target = np.asarray(object_position, dtype=np.float64)
        if target.shape != (3,) or not np.isfinite(target).all():
            raise ValueError(f"object_position must be 3 finite numbers, got {target!r}")
        self._set_joints(q)
        self.target = target
        self._place_objects(target)

    def ee_point_jacobian(self, q, h: float = 1e-5) -> np.ndarray:
        """d(EE points)/dq (3·n_points, 7) at joint positions ``q`` (7,): central differences of
        the points' forward kinematics (what :meth:`state` reports; the condition's targets cancel,
        so any :meth:`reset` before will do).  Leaves the arm at ``q`` at rest."""
        self._check_open()
        if self.condition < 0:
            raise RuntimeError("call reset(condition) before ee_point_jacobian()")
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (7,) or not np.isfinite(q).all():
            raise ValueError(f"q must be 7 finite numbers, got {q!r}")
        pts = self.layout.ee_points
        J = np.empty((pts.stop - pts.start, 7))
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = h
            self._set_joints(q + dq)
            plus = self.state()[pts]
            self._set_joints(q - dq)
            J[:, j] = (plus - self.state()[pts]) / (2 * h)
        self._set_joints(q)
        return J

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
        q0, target, ee_targets = self._condition_data(int(condition))
        cid, r = self._cid, self._robot
        if (self._gravity and self._gravity_update == "world"
                and p.getNumBodies(physicsClientId=cid) != 2 + len(self.scene_bodies)):
            raise RuntimeError("gravity_update='world' compensates gravity by switching it off in the "
                               "world, so it needs the arm to be the only body; other bodies were added: "
                               "use gravity_update='substep'")
        self._set_joints(q0)
        p.setJointMotorControlArray(r, self._arm, p.VELOCITY_CONTROL, forces=[0.0] * 7,
                                    physicsClientId=cid)
        p.setJointMotorControlArray(r, list(FINGER_JOINTS), p.POSITION_CONTROL,
                                    targetPositions=[self._finger] * 2, forces=[20.0, 20.0],
                                    physicsClientId=cid)
        show_marker = self.scene is None and self.peg is None
        p.resetBasePositionAndOrientation(self._marker, target.tolist() if show_marker else [0, 0, -10],
                                          [0, 0, 0, 1], physicsClientId=cid)
        self._place_objects(target)
        self.condition = int(condition)
        self.target = target
        self.ee_targets = ee_targets
        self._point_pairs = [(tuple(a), tuple(b)) for a, b in
                             zip(self.ee_points_local.tolist(), ee_targets.tolist())]
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

    def step(self, u: np.ndarray) -> np.ndarray:
        """Apply torques ``u`` (7,) for one control period; return the new state (dX,).

        ``u`` is clipped to ``torque_limits``; a non-finite ``u`` raises ``ValueError`` (nothing
        non-finite is ever passed to PyBullet).
        """
        if self.condition < 0:
            raise RuntimeError("call reset(condition) before step()")
        ua = np.asarray(u, dtype=np.float64)
        if ua.shape != (7,):
            raise ValueError(f"action must have shape (7,), got {ua.shape}")
        if not np.isfinite(ua).all():
            raise ValueError(f"non-finite action {ua}")
        ul = np.minimum(np.maximum(ua, self._ntlim), self._tlim).tolist()
        cid, r, arm = self._cid, self._robot, self._arm
        torque, step_sim, set_ctrl = p.TORQUE_CONTROL, p.stepSimulation, p.setJointMotorControlArray
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
        """g(q) for the arm: inverse dynamics at the current q, zero velocity and acceleration."""
        cid, r = self._cid, self._robot
        q = [s[0] for s in p.getJointStates(r, self._dofs, physicsClientId=cid)]
        return p.calculateInverseDynamics(r, q, self._zeros9, self._zeros9, physicsClientId=cid)[:7]

    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia M(q) (7, 7) of the arm at joint positions ``q`` (7,), fingers open."""
        qa = [float(v) for v in q] + [self._finger, self._finger]
        M = np.asarray(p.calculateMassMatrix(self._robot, qa, physicsClientId=self._cid))
        return M[:7, :7].copy()

    def gravity_torque(self) -> np.ndarray:
        """The gravity torque g(q) (7,) at the current configuration (what the compensation adds)."""
        if self._gravity and self._gravity_update == "world":  # inverse dynamics uses world gravity
            p.setGravity(0.0, 0.0, GRAVITY, physicsClientId=self._cid)
            try:
                return np.asarray(self._gravity_torque())
            finally:
                p.setGravity(0.0, 0.0, 0.0, physicsClientId=self._cid)
        return np.asarray(self._gravity_torque())

    def state(self) -> np.ndarray:
        """The current state vector (dX,); see the module docstring for the layout."""
        # Plain-Python arithmetic on PyBullet's tuples: for a handful of 3-vectors this is about
        # twice as fast as building small numpy arrays.
        if self._closed:
            raise RuntimeError("simulator is closed")
        cid, r = self._cid, self._robot
        js = p.getJointStates(r, self._arm, physicsClientId=cid)
        ls = p.getLinkState(r, EE_LINK, computeLinkVelocity=1, computeForwardKinematics=1,
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
        X = np.asarray(X)
        s = self.layout.ee_points.start
        return np.linalg.norm(X[..., s:s + 3], axis=-1)

    def ik_gripper_down(self, goal, rest_pose) -> np.ndarray:
        """Joint positions (7,) that put the grasp point at ``goal`` (3,) with the gripper pointing
        straight down (PyBullet's damped least-squares IK, iterated from ``rest_pose``; the arm is
        left at the result).  For start poses above a hole and scripted insertions
        (bench/bench_peg_contact.py, the peg tests)."""
        orn = p.getQuaternionFromEuler([np.pi, 0, 0])
        rest = [float(v) for v in rest_pose] + [self._finger, self._finger]
        for _ in range(20):
            sol = p.calculateInverseKinematics(self._robot, EE_LINK, [float(v) for v in goal], orn,
                                               restPoses=rest, maxNumIterations=200,
                                               residualThreshold=1e-7, physicsClientId=self._cid)
            self._set_joints(sol[:7])
        return np.array(sol[:7])

    def insertion(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Peg task: (insertion depth in m, inserted?) from state(s) ``X`` (..., dX); see
        :func:`gps_ros.sim.peg.insertion`."""
        if self.peg is None:
            raise RuntimeError("insertion() needs agent.peg")
        from gps_ros.sim.peg import insertion

        s = self.layout.ee_points.start + 3 * self._tip_index
        return insertion(np.asarray(X)[..., s:s + 3], self.peg)

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World position (3,) and quaternion xyzw (4,) of the EE frame (link 11)."""
        ls = p.getLinkState(self._robot, EE_LINK, computeForwardKinematics=1, physicsClientId=self._cid)
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

    def __enter__(self) -> "PandaReachSim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
