"""The global policy as a GPS stage: distillation targets from the local controllers, prediction
along samples (for linearisation), and an actor that runs the network on the robot or sim."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import logging
import time

import numpy as np
import torch

from ..control import LinearGaussianController
from ..sample import Trajectories
from .distill import DistillData, PolicyTrainer

log = logging.getLogger(__name__)


class PolicyActor:
    """Runs π_θ step by step: u = μ_θ(image, q, q̇) + chol(Σ_π) ε.  ``needs_image`` tells the agent
    to pass the current camera frame (H, W, 3) uint8 as ``image``."""

    needs_image = True

    def __init__(self, net, joint_idx: np.ndarray, pol_covar: np.ndarray):
        self.net = net.eval()
        self.needs_image = net.n_points > 0     # a blind network runs without a camera
        self.joint_idx = joint_idx
        self.chol = np.linalg.cholesky(pol_covar)

    @torch.no_grad()
    def act(self, t: int, x: np.ndarray, noise: Optional[np.ndarray] = None,
            image: Optional[np.ndarray] = None) -> np.ndarray:
        q = torch.as_tensor(x[self.joint_idx], dtype=torch.float32)[None]
        img = (torch.as_tensor(image)[None] if image is not None else torch.zeros(0))
        u = self.net(img, q)[0].double().numpy()
        if noise is not None:
            u = u + self.chol @ noise
        return u


def state_jacobian(Jq: np.ndarray, joint_idx, N: int, T: int, dX: int) -> np.ndarray:
    """The network's Jacobian in its joint inputs, Jq (N*T, dU, dq), as ∂μ/∂x (N, T, dU, dX):
    zero columns for the state dimensions the network does not see."""
    J = np.zeros((N * T, Jq.shape[1], dX))
    J[:, :, joint_idx] = Jq
    return J.reshape(N, T, Jq.shape[1], dX)


class GlobalPolicy:
    """Wraps a :class:`PolicyTrainer` for the MDGPS loop.

    Args:
        trainer: the network and its optimiser.
        joint_idx: state indices of the joint positions and velocities the network sees.
        image_key: observation name of the camera frames in ``Trajectories.obs``.

        aux_targets: (M, aux_dim) per-condition targets of the auxiliary head (the object
            positions), indexed by each trial's ``meta.condition``.

        replay: how many S-steps' data each S-step trains on (1: this iteration's only).  Older
            data keeps the labels of the controllers of its own iteration (data aggregation
            against forgetting; it is pickled with the policy, so resume stays exact).
        pretrain: a callable returning (images, object positions) for vision pretraining
            (:class:`gps_ros.policy.pretrain.PretrainSource`), run once before the first S-step
            for ``pretrain_iterations`` steps; the frames then stay in the trainer's aux pool.
    """

    def __init__(self, trainer: PolicyTrainer, joint_idx: np.ndarray, image_key: str = "image",
                 aux_targets: Optional[np.ndarray] = None, replay: int = 1,
                 pretrain: Optional[Callable[[], tuple]] = None, pretrain_iterations: int = 0,
                 pretrain_lr: Optional[float] = None):
        self.trainer = trainer
        self.pretrain_lr = pretrain_lr
        self.pretrain = pretrain
        self.pretrain_iterations = pretrain_iterations
        self.replay = replay
        self.buffer: list = []
        self.aux_targets = None if aux_targets is None else np.asarray(aux_targets, dtype=np.float64)
        self.joint_idx = np.asarray(joint_idx)
        self.image_key = image_key
        self.trained = False

    #: attributes added after policies were first pickled into run states, with the value that
    #: reproduces the old behaviour: a resumed old run gets these
    _ADDED_SINCE_FIRST_PICKLE = {"aux_targets": None, "replay": 1, "buffer": [], "pretrain": None,
                                 "pretrain_lr": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**self._ADDED_SINCE_FIRST_PICKLE, **state})
        self.buffer = list(self.buffer)

    def _inputs(self, tr: Trajectories):
        N, T = tr.N, tr.T
        q = tr.X[..., self.joint_idx].reshape(N * T, -1)
        if self.trainer.net.n_points:
            if self.image_key not in tr.obs:
                raise ValueError(f"the policy needs obs[{self.image_key!r}] but the trials have "
                                 f"{sorted(tr.obs)}; configure agent.camera")
            img = tr.obs[self.image_key].reshape(N * T, *tr.obs[self.image_key].shape[2:])
        else:
            img = None
        return img, q

    def predict(self, tr: Trajectories) -> np.ndarray:
        img, q = self._inputs(tr)
        return self.trainer.predict(img, q).reshape(tr.N, tr.T, -1)

    def state_jacobian(self, tr: Trajectories, dX: int) -> np.ndarray:
        """∂μ_θ/∂x (N, T, dU, dX) along the samples through the state inputs (the camera frames
        held fixed): zero columns for the state dimensions the network does not see."""
        img, q = self._inputs(tr)
        return state_jacobian(self.trainer.jacobian(img, q), self.joint_idx, tr.N, tr.T, dX)

    def covariance(self) -> np.ndarray:
        return self.trainer.pol_covar

    def actor(self) -> PolicyActor:
        return PolicyActor(self.trainer.net, self.joint_idx, self.trainer.pol_covar)

    def distill_data(self, trajs: Sequence[Trajectories],
                     controllers: Sequence[LinearGaussianController]) -> DistillData:
        imgs, qs, us, ps, aux = [], [], [], [], []
        want_aux = self.aux_targets is not None
        for tr, c in zip(trajs, controllers):
            img, q = self._inputs(tr)
            imgs.append(img)
            qs.append(q)
            if want_aux:
                conds = np.array([m.condition for m in tr.meta])
                aux.append(np.repeat(self.aux_targets[conds], tr.T, axis=0))
            us.append(c.mean_actions(tr.X).reshape(tr.N * tr.T, -1))
            ps.append(np.broadcast_to(c.inv_pol_covar, (tr.N,) + c.inv_pol_covar.shape)
                      .reshape(tr.N * tr.T, c.dU, c.dU))
        return DistillData(None if imgs[0] is None else np.concatenate(imgs), np.concatenate(qs),
                           np.concatenate(us), np.concatenate(ps),
                           np.concatenate(aux) if want_aux else None)

    def train(self, trajs: Sequence[Trajectories],
              controllers: Sequence[LinearGaussianController]) -> Dict:
        """S-step on this iteration's samples labelled by the new controllers, plus (with
        ``replay > 1``) the samples and labels of the previous ``replay - 1`` S-steps."""
        data = self.distill_data(trajs, controllers)
        self.buffer = (self.buffer + [data])[-max(1, self.replay):]
        pre = None
        if self.pretrain is not None:
            t0 = time.perf_counter()
            images, objects = self.pretrain()
            pre = self.trainer.pretrain(images, objects, self.pretrain_iterations,
                                        lr=self.pretrain_lr)
            pre["seconds"] = time.perf_counter() - t0
            log.info("vision pretraining on %d frames: aux error %.3g -> %.3g (x aux_scale^2) "
                     "in %.1f s", len(images), pre["loss_start"], pre["loss_end"], pre["seconds"])
            self.pretrain = None
        out = self.trainer.train(concat_data(self.buffer) if len(self.buffer) > 1 else data)
        if pre is not None:
            out.update({f"pretrain_{k}": v for k, v in pre.items()})
        self.trained = True
        return out


def concat_data(parts: Sequence[DistillData]) -> DistillData:
    """One :class:`DistillData` of several (images, aux only if every part has them)."""
    cat = lambda xs: None if any(x is None for x in xs) else np.concatenate(xs)  # noqa: E731
    return DistillData(cat([p.images for p in parts]), np.concatenate([p.joint_state for p in parts]),
                       np.concatenate([p.actions for p in parts]),
                       np.concatenate([p.precision for p in parts]), cat([p.aux for p in parts]))
