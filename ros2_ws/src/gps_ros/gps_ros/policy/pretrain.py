"""Vision pretraining frames: camera images of random scenes labelled with the object position.

Levine, Finn et al. (2016, §4.3) pretrain the convolution layers by regressing the object's
position from images before the first S-step.  Here a separate, camera-only simulator renders
``n`` frames, each with the object uniform in ``agent.target_region`` (or, without one, the box
spanned by the training targets) and the arm at the start pose plus Gaussian joint noise (so the
arm is seen in many poses, as during trials, and sometimes in front of the object).  Training the
feature points on *many* object positions, not only the handful of training conditions, is what
lets the policy interpolate to held-out targets.

The frames cost ~1 ms each with the fast camera, so 2000 of them take a few seconds.
"""
from __future__ import annotations

import logging
from typing import Tuple

import numpy as np

log = logging.getLogger(__name__)


def object_region(agent_cfg) -> Tuple[np.ndarray, np.ndarray]:
    """(low, high) of where the object may lie: ``target_region``, else the training targets' box."""
    if agent_cfg.target_region is not None:
        return (np.asarray(agent_cfg.target_region.low, float),
                np.asarray(agent_cfg.target_region.high, float))
    t = np.array([c.target for c in agent_cfg.conditions], float)
    return t.min(0), t.max(0)


def render_pretrain_set(agent_cfg, n: int, seed: int, joint_noise: float = 0.3
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` frames (n, H, W, 3) uint8 and their object positions (n, 3) float64.

    Deterministic in ``seed``.  Needs ``agent_cfg.camera``.
    """
    from ..agents.sim import build_sim

    if agent_cfg.camera is None:
        raise ValueError("vision pretraining needs agent.camera")
    if n < 1:
        raise ValueError(f"need at least one pretraining frame, got {n}")
    cfg = agent_cfg.model_copy(deep=True)
    cfg.gui = False
    sim, cam = build_sim(cfg)
    try:
        rng = np.random.default_rng(seed)
        lo, hi = object_region(cfg)
        starts = np.array([c.start_joint_positions or cfg.start_joint_positions
                           for c in cfg.conditions], float)
        images = np.empty((n, cam.height, cam.width, 3), np.uint8)
        objects = rng.uniform(lo, hi, size=(n, 3))
        for i in range(n):
            q = starts[rng.integers(len(starts))] + joint_noise * rng.standard_normal(sim.dU)
            q = np.clip(q, sim.joint_lower, sim.joint_upper)
            sim.pose_scene(q, objects[i])
            images[i] = cam.render(sim)
    finally:
        sim.close()
    return images, objects


class PretrainSource:
    """A picklable recipe for :func:`render_pretrain_set` (kept by the policy until used)."""

    def __init__(self, agent_cfg, n: int, seed: int, joint_noise: float = 0.3):
        self.agent_cfg, self.n, self.seed, self.joint_noise = agent_cfg, n, seed, joint_noise

    def __call__(self) -> Tuple[np.ndarray, np.ndarray]:
        return render_pretrain_set(self.agent_cfg, self.n, self.seed, self.joint_noise)
