"""The rigid-body model of the controlled arm, built once from its URDF with Pinocchio.

One :class:`RobotModel` serves every part of the package that needs to know the arm: the EE cost
and the initial controllers (joint-space inertia, point Jacobians), the ``lqr`` start and the
``model_prior`` dynamics (forward dynamics and its derivatives), ``gps-ros targets record`` and the
sampler's state on a real robot (forward kinematics), the safety limits, and the simulator's
built-in checks.  Pinocchio (Carpentier et al.) was chosen over PyBullet's own kinematics after
measuring both: forward kinematics + one frame Jacobian take 1.4-2.3 µs with Pinocchio against
22-29 µs with PyBullet (reset the joints, ``getLinkState``, ``calculateJacobian``; iiwa, UR5,
xArm6 on this machine; ``bench/bench_robot_model.py``), its analytic derivatives of the forward
dynamics give the model prior without finite differences, and a model needs no physics client.
Its cost is the install (the ``pin`` wheel and its dependencies, see the README).

As Pinocchio itself separates the model from its data, a :class:`RobotModel` holds one scratch
``data``: a model is not to be shared between threads (:meth:`copy` gives an independent one).

Frames: every position, orientation and Jacobian is expressed in the frame of ``base_link``
(the world of the task; the simulator puts ``base_link`` at the world origin), with gravity along
its −z axis.  Joints: ``q``, ``qd``, torques and Jacobian columns are in the description's joint
order (``agent.robot.joints``); the other movable joints are locked at their held positions.
"""
from __future__ import annotations

import numpy as np

from gps_ros.robot.description import RobotDescription, RobotError, freeze_joints

GRAVITY = 9.81


class RobotModel:
    """Kinematics and dynamics of the controlled joints of a :class:`RobotDescription`.

    Args:
        description: the checked robot (URDF text, chain, controlled and held joints).

    Attributes:
        description: the robot description.
        names: the controlled joints.
        n: their number (dU in effort mode).
        lower, upper, velocity_limit, effort_limit: the URDF limits of the controlled joints.
    """

    def __init__(self, description: RobotDescription) -> None:
        import pinocchio as pin

        self._pin = pin
        self.description = description
        try:   # the held joints frozen into the URDF (Pinocchio's buildReducedModel trips over a
            #     joint and a link of the same name, as the SO-100's "gripper")
            model = pin.buildModelFromXML(freeze_joints(description.urdf, description.held))
        except (RuntimeError, ValueError) as err:
            raise RobotError(f"agent.robot.urdf: Pinocchio cannot build {description.source}: "
                             f"{err}") from None
        self.model = model
        self.data = model.createData()
        self.names = tuple(description.joints)
        self.n = len(self.names)
        if model.nv != self.n:
            raise RobotError(f"agent.robot.joints: the model has {model.nv} degrees of freedom after "
                             f"locking the held joints, {self.n} joints are controlled")
        ids = [model.getJointId(n) for n in self.names]
        self._vi = np.array([model.joints[i].idx_v for i in ids])
        nq = np.array([model.joints[i].nq for i in ids])
        iq = np.array([model.joints[i].idx_q for i in ids])
        self._qi, self._q_at = iq[nq == 1], np.flatnonzero(nq == 1)
        self._ci, self._c_at = iq[nq == 2], np.flatnonzero(nq == 2)
        self._q0 = pin.neutral(model)
        # the common case: Pinocchio's configuration is q itself, its velocity order ours
        self._plain = bool(model.nq == self.n and np.array_equal(iq, np.arange(self.n))
                           and np.array_equal(self._vi, np.arange(self.n)))
        self._lower_tri = np.tril_indices(self.n, -1)
        self.ee_frame = model.getFrameId(description.ee_link, pin.FrameType.BODY)
        base = model.getFrameId(description.base_link, pin.FrameType.BODY)
        for name, fid in (("ee_link", self.ee_frame), ("base_link", base)):
            if fid >= model.nframes:
                raise RobotError(f"agent.robot.{name}: Pinocchio has no frame "
                                 f"{getattr(description, name)!r}")
        pin.framesForwardKinematics(model, self.data, self._q0)
        Tb = self.data.oMf[base]
        self._Rb = np.array(Tb.rotation)                 # base_link in the URDF root's frame
        self._tb = np.array(Tb.translation)
        self._base_identity = bool(np.allclose(self._Rb, np.eye(3)) and np.allclose(self._tb, 0.0))
        model.gravity.linear = self._Rb @ np.array([0.0, 0.0, -GRAVITY])
        self.lower = description.joint_lower()
        self.upper = description.joint_upper()
        info = description.joint_info
        self.velocity_limit = np.array([info[j].velocity for j in self.names])
        self.effort_limit = np.array([info[j].effort for j in self.names])
        self._frames: dict = {}

    def base_in_root(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t): the pose of ``base_link`` in the URDF root's frame (constant)."""
        return self._Rb.copy(), self._tb.copy()

    def copy(self) -> "RobotModel":
        """An independent model (own scratch data) of the same robot, for another thread."""
        return RobotModel(self.description)

    # --- configuration ------------------------------------------------------------------------
    def configuration(self, q) -> np.ndarray:
        """Pinocchio's configuration vector for joint positions ``q`` (n,)."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.n,):
            raise ValueError(f"q must have shape ({self.n},) for joints {list(self.names)}, got {q.shape}")
        if self._plain:
            return q
        out = self._q0.copy()
        out[self._qi] = q[self._q_at]
        if self._ci.size:
            a = q[self._c_at]
            out[self._ci], out[self._ci + 1] = np.cos(a), np.sin(a)
        return out

    def _v(self, qd) -> np.ndarray:
        if self._plain:
            return np.asarray(qd, dtype=np.float64)
        out = np.zeros(self.n)
        out[self._vi] = np.asarray(qd, dtype=np.float64)
        return out

    def frame_id(self, link: str) -> int:
        fid = self._frames.get(link)
        if fid is None:
            fid = self.model.getFrameId(link, self._pin.FrameType.BODY)
            if fid >= self.model.nframes:
                raise RobotError(f"no link {link!r} in the model of {self.description.source}")
            self._frames[link] = fid
        return fid

    def _to_base(self, p: np.ndarray, R: np.ndarray):
        if self._base_identity:
            return p, R
        return self._Rb.T @ (p - self._tb), self._Rb.T @ R

    # --- kinematics ---------------------------------------------------------------------------
    def link_pose(self, q, link: str | None = None):
        """(position (3,), rotation (3, 3)) of ``link`` (default ``ee_link``) at ``q``."""
        pin = self._pin
        fid = self.ee_frame if link is None else self.frame_id(link)
        pin.framesForwardKinematics(self.model, self.data, self.configuration(q))
        T = self.data.oMf[fid]
        return self._to_base(np.array(T.translation), np.array(T.rotation))

    def link_poses(self, q, links):
        """Positions (k, 3) and rotations (k, 3, 3) of several links at ``q`` (one FK pass)."""
        pin = self._pin
        pin.framesForwardKinematics(self.model, self.data, self.configuration(q))
        P = np.empty((len(links), 3))
        R = np.empty((len(links), 3, 3))
        for i, ln in enumerate(links):
            T = self.data.oMf[self.frame_id(ln)]
            P[i], R[i] = self._to_base(np.array(T.translation), np.array(T.rotation))
        return P, R

    def points(self, q, local) -> np.ndarray:
        """Positions (k, 3) of points ``local`` (k, 3) given in the ``ee_link`` frame."""
        p, R = self.link_pose(q)
        return p + np.asarray(local, dtype=np.float64).reshape(-1, 3) @ R.T

    def point_jacobian(self, q, local) -> np.ndarray:
        """d(points)/dq (3k, n) of points ``local`` (k, 3) in the ``ee_link`` frame, rows point
        by point (x, y, z), as the state stacks them."""
        pin = self._pin
        J6 = pin.computeFrameJacobian(self.model, self.data, self.configuration(q), self.ee_frame,
                                      pin.ReferenceFrame.LOCAL_WORLD_ALIGNED)
        if not self._plain:
            J6 = J6[:, self._vi]
        R = self.data.oMf[self.ee_frame].rotation
        r = np.asarray(local, dtype=np.float64).reshape(-1, 3) @ R.T       # offsets, world
        # v + ω × r for each point: the linear rows minus r × (angular rows)
        Jw = J6[3:]
        J = np.empty((len(r), 3, self.n))
        J[:] = J6[:3]
        J[:, 0] -= r[:, 1:2] * Jw[2] - r[:, 2:3] * Jw[1]
        J[:, 1] -= r[:, 2:3] * Jw[0] - r[:, 0:1] * Jw[2]
        J[:, 2] -= r[:, 0:1] * Jw[1] - r[:, 1:2] * Jw[0]
        if not self._base_identity:
            J = self._Rb.T[None] @ J
        return J.reshape(-1, self.n)

    def point_state(self, q, qd, local):
        """Positions (k, 3) and velocities (k, 3) of the points ``local`` at (q, qd)."""
        J = self.point_jacobian(q, local)        # runs the forward kinematics too
        T = self.data.oMf[self.ee_frame]
        p, R = self._to_base(np.array(T.translation), np.array(T.rotation))
        pts = p + np.asarray(local, dtype=np.float64).reshape(-1, 3) @ R.T
        return pts, (J @ np.asarray(qd, dtype=np.float64)).reshape(-1, 3)

    # --- dynamics -----------------------------------------------------------------------------
    def mass_matrix(self, q) -> np.ndarray:
        """Joint-space inertia M(q) (n, n)."""
        M = np.array(self._pin.crba(self.model, self.data, self.configuration(q)))
        il = self._lower_tri
        M[il] = M.T[il]                                   # crba fills the upper triangle
        return M if self._plain else M[np.ix_(self._vi, self._vi)]

    def gravity(self, q) -> np.ndarray:
        """The gravity torque g(q) (n,): what gravity compensation adds."""
        g = np.array(self._pin.computeGeneralizedGravity(self.model, self.data, self.configuration(q)))
        return g if self._plain else g[self._vi]

    def bias(self, q, qd) -> np.ndarray:
        """Coriolis, centrifugal and gravity torques C(q, qd) qd + g(q) (n,)."""
        b = self._pin.nonLinearEffects(self.model, self.data, self.configuration(q), self._v(qd))
        return np.array(b)[self._vi]

    def forward_dynamics(self, q, qd, tau) -> np.ndarray:
        """Joint accelerations (n,) under torques ``tau`` (gravity included)."""
        a = self._pin.aba(self.model, self.data, self.configuration(q), self._v(qd), self._v(tau))
        out = np.empty(self.n)
        out[:] = np.asarray(a)[self._vi]
        return out

    def forward_dynamics_derivatives(self, q, qd, tau):
        """(qdd, dqdd/dq, dqdd/dqd, dqdd/dtau = M⁻¹), the derivatives (n, n) each (Pinocchio's
        analytic ABA derivatives; Carpentier & Mansard 2018)."""
        pin = self._pin
        qp, v, t = self.configuration(q), self._v(qd), self._v(tau)
        if self._ci.size:
            raise NotImplementedError("forward dynamics derivatives for continuous joints")
        pin.computeABADerivatives(self.model, self.data, qp, v, t)
        ix = np.ix_(self._vi, self._vi)
        Minv = np.array(self.data.Minv)
        Minv = np.triu(Minv) + np.triu(Minv, 1).T
        qdd = np.array(self.data.ddq)[self._vi]
        return qdd, np.array(self.data.ddq_dq)[ix], np.array(self.data.ddq_dv)[ix], Minv[ix]

    # --- limits and reach ----------------------------------------------------------------------
    def reach(self) -> tuple[np.ndarray, float]:
        """(centre (3,), radius): every position of the ``ee_link`` origin lies within ``radius``
        of ``centre``, the origin of the first controlled joint.  The radius is the sum of the
        joint offsets down to ``ee_link`` (plus prismatic strokes): an upper bound of the reach."""
        desc = self.description
        chain = desc.chain(desc.ee_link)
        first = next(i for i, j in enumerate(chain) if j.name in self.names)
        radius = 0.0
        for j in chain[first + 1:]:
            radius += float(np.linalg.norm(j.xyz))
            if j.type == "prismatic":
                radius += max(abs(j.lower), abs(j.upper))
        if chain[first].type == "prismatic":
            radius += max(abs(chain[first].lower), abs(chain[first].upper))
        centre, _ = self.link_pose(np.zeros(self.n), chain[first].child)
        return centre, radius
