"""SimAgent: runs trials of a policy on the simulated robot and returns :class:`Trajectories`."""
from __future__ import annotations

import logging
import math
from typing import List, Optional, Protocol

import numpy as np

from gps_ros.config import AgentConfig, SceneSection
from gps_ros.sample import TrialMeta, Trajectories
from gps_ros.sim.arm import ArmSim

log = logging.getLogger(__name__)

#: joint speed (rad/s) above which a trial is considered blown up (arms' limits are 2-3 rad/s)
MAX_JOINT_VELOCITY = 10.0


class Policy(Protocol):
    """``act(t, x, noise)``; a policy with ``needs_image = True`` also gets ``image=`` (H, W, 3)."""

    def act(self, t: int, x: np.ndarray, noise: np.ndarray) -> np.ndarray: ...


def build_sim(cfg: AgentConfig, gravity_update: Optional[str] = None, task=None):
    """(ArmSim, Camera or None) for ``cfg``: the visual scene (object at the target, table)
    when ``cfg.camera`` or ``cfg.scene`` is set, and the camera when ``cfg.camera`` is
    (``task``: the config's :class:`~gps_ros.task.TaskModel`, if already built)."""
    scene = camera = None
    if cfg.camera is not None or cfg.scene is not None:
        from gps_ros.sim.arm import SceneConfig

        sc = cfg.scene or SceneSection()
        scene = SceneConfig(object_shape="none" if cfg.peg is not None else sc.object_shape,
                            object_size=sc.object_size,
                            table=sc.table, table_height=sc.table_height)
    sim = ArmSim(cfg, gravity_update=gravity_update, scene=scene, task=task)
    if cfg.camera is not None:
        from gps_ros.sim.camera import Camera, CameraConfig

        c = cfg.camera
        camera = Camera(CameraConfig(width=c.width, height=c.height, fov=c.fov, eye=tuple(c.eye),
                                     target=tuple(c.target), renderer=c.renderer))
    return sim, camera


class SimAgent:
    """Owns one :class:`~gps_ros.sim.arm.ArmSim`; each trial is ``cfg.T`` control steps.

    ``X[i, t]`` is the state at which ``U[i, t]`` was applied (see :mod:`gps_ros.sample`).
    """

    def __init__(self, cfg: AgentConfig, gravity_update: Optional[str] = None) -> None:
        self.cfg = cfg
        self.T = cfg.T
        self.sim, self.camera = build_sim(cfg, gravity_update)
        self.task = self.sim.task
        self.dX = self.sim.dX
        self.dU = self.sim.dU
        self.layout = self.sim.layout

    @property
    def num_conditions(self) -> int:
        return len(self.cfg.conditions)

    def sample(self, policy: Policy, condition: int, noise: Optional[np.ndarray] = None,
               seeds: Optional[List[int]] = None, source: str = "controller") -> Trajectories:
        """Run one trial per row of ``noise`` (n, T, dU); ``None`` gives one noiseless trial.

        For each trial: ``x = reset(condition)``; for each t: ``u = policy.act(t, x, noise[i, t])``,
        record ``X[i, t] = x, U[i, t] = u``, ``x = step(u)``.  A trial whose action is non-finite,
        whose state becomes non-finite, or whose joint speed exceeds :data:`MAX_JOINT_VELOCITY` is
        stopped there: its remaining steps are filled with the last finite state/action, it is
        marked discarded with a reason, and a warning is logged.  Nothing non-finite reaches
        PyBullet, and the simulator stays usable.  ``seeds`` (one per trial) are only recorded.
        """
        T, dU, dX = self.T, self.dU, self.dX
        if noise is None:
            noise = np.zeros((1, T, dU))
        noise = np.asarray(noise, dtype=np.float64)
        if noise.ndim != 3 or noise.shape[1:] != (T, dU):
            raise ValueError(f"noise must have shape (n, {T}, {dU}), got {noise.shape}")
        n = noise.shape[0]
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} trials")
        X = np.empty((n, T, dX))
        U = np.empty((n, T, dU))
        meta = [TrialMeta(condition=int(condition), seed=None if seeds is None else int(seeds[i]),
                          source=source) for i in range(n)]
        sim, act, cam = self.sim, policy.act, self.camera
        wants_image = bool(getattr(policy, "needs_image", False))
        if wants_image and cam is None:
            raise ValueError("this policy needs camera images; configure agent.camera")
        obs = {}
        if cam is not None:
            obs["image"] = np.zeros((n, T, cam.cfg.height, cam.cfg.width, 3), dtype=np.uint8)
        qd = self.layout.joint_vel
        for i in range(n):
            x = sim.reset(condition)
            Xi, Ui, Ni = X[i], U[i], noise[i]
            Ii = obs["image"][i] if cam is not None else None
            for t in range(T):
                if cam is not None:
                    Ii[t] = cam.render(sim)
                if wants_image:
                    u = np.asarray(act(t, x, Ni[t], image=Ii[t]), dtype=np.float64)
                else:
                    u = np.asarray(act(t, x, Ni[t]), dtype=np.float64)
                if u.shape != (dU,):
                    raise ValueError(f"policy returned an action of shape {u.shape}, expected ({dU},)")
                Xi[t] = x
                if not math.isfinite(u.sum()):
                    Ui[t:] = Ui[t - 1] if t > 0 else 0.0
                    Xi[t + 1:] = x
                    self._discard(meta[i], i, f"non-finite action at t={t}")
                    break
                Ui[t] = u
                x_new = sim.step(u)
                if not math.isfinite(x_new.sum()):
                    Ui[t + 1:] = u
                    Xi[t + 1:] = x
                    self._discard(meta[i], i, f"non-finite state after step t={t}")
                    break
                speed = np.abs(x_new[qd]).max()
                if speed > MAX_JOINT_VELOCITY:
                    Ui[t + 1:] = u
                    Xi[t + 1:] = x_new
                    self._discard(meta[i], i, f"joint speed {speed:.3g} rad/s > {MAX_JOINT_VELOCITY:g} "
                                              f"after step t={t} (simulation blown up)")
                    break
                x = x_new
        return Trajectories(X, U, meta, obs)

    @staticmethod
    def _discard(meta: TrialMeta, i: int, reason: str) -> None:
        meta.discarded = True
        meta.reason = reason
        log.warning("trial %d of condition %d discarded: %s", i, meta.condition, reason)

    def close(self) -> None:
        self.sim.close()

    def __enter__(self) -> "SimAgent":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
