"""Distillation: supervised training of π_θ on the local controllers' actions (the GPS S-step).

Loss (Levine et al. 2016, eq. 5; Montgomery & Levine 2016): for each sample i and step t,

    ℓ = (π_θ(o_t) − μ_t)ᵀ Σ_t⁻¹ (π_θ(o_t) − μ_t),   μ_t = K_t x_t + k_t of the local controller,

averaged over minibatches drawn from all conditions; Σ_t⁻¹ (the controllers' precision) makes the
network match the controllers where they are certain.  Precisions are divided by their mean trace
per dimension and the loss by the mean action variance (the network's output normalisation),
so it is dimensionless and comparable across tasks and robots.  The policy covariance is
Σ_π = (mean_{i,t} Σ_t⁻¹)⁻¹ (GPS).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from .network import NetworkConfig, VisuomotorPolicy, flush_denormals

log = logging.getLogger(__name__)


#: set by a process that is shutting down (trainer_node on Ctrl-C): a running S-step stops at its
#: next gradient step instead of holding the process for minutes
STOP_TRAINING = threading.Event()


class TrainingStopped(RuntimeError):
    """An S-step ended early because :data:`STOP_TRAINING` was set."""


@dataclass
class DistillData:
    """Training tuples, flattened over (sample, t): images (n, H, W, 3) uint8 (or None for a
    blind network), joint_state (n, dq), actions (n, dU) targets, precision (n, dU, dU)."""

    images: Optional[np.ndarray]
    joint_state: np.ndarray
    actions: np.ndarray
    precision: np.ndarray
    #: optional (n, aux_dim) targets of the network's auxiliary head (e.g. the object position)
    aux: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return self.actions.shape[0]


def weighted_loss(pred: torch.Tensor, target: torch.Tensor, prec: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (pred − target)ᵀ P (pred − target)."""
    d = pred - target
    return torch.einsum("bi,bij,bj->b", d, prec, d).mean()


def joint_jacobian(fn, images, joint_state, batch: int = 1024) -> np.ndarray:
    """∂fn(images, q)/∂q (n, dU, dq) float64 at each q = ``joint_state`` row (n, dq), the images
    held fixed; ``fn`` the network or a loaded TorchScript export.  ``images``: (n, H, W, 3) uint8
    (array or tensor), batched with the joint states, or a blind network's placeholder tensor,
    passed as is when its length is not n."""
    n = joint_state.shape[0]
    per_row = len(images) == n
    out = []
    with torch.enable_grad():
        for s in range(0, n, batch):
            q = torch.as_tensor(joint_state[s:s + batch], dtype=torch.float32).requires_grad_(True)
            img = torch.as_tensor(images[s:s + batch]) if per_row else images
            u = fn(img, q)
            rows = [torch.autograd.grad(u[:, j].sum(), q, retain_graph=j + 1 < u.shape[1])[0]
                    for j in range(u.shape[1])]
            out.append(torch.stack(rows, dim=1).double().numpy())
    return np.concatenate(out)


class PolicyTrainer:
    """Owns the network, its optimiser and the policy covariance.

    Args:
        net_cfg: architecture.
        lr: Adam learning rate.  batch_size: minibatch size.  iterations: gradient steps per
        :meth:`train` call.  weight_decay: L2 on the weights.  seed: torch seed for init and batches.
        augment: random ±``shift`` pixel translations of the images (0 disables).
        aux_weight: weight of the auxiliary loss ‖aux(o) − a‖² / aux_scale² (e.g. the object
        position regressed from the feature points — the vision pretraining of Levine, Finn et
        al. 2016, here trained jointly with the distillation); needs ``DistillData.aux`` and a
        network with ``aux_dim > 0``.
        renormalise: re-fit the input/output normalisation to each S-step's data (the network's
        function kept, :meth:`VisuomotorPolicy.renormalise`) instead of keeping the first S-step's.
        device: where the gradient steps run: "cpu", "cuda" or "auto" (cuda when available).
        The network lives on the CPU between S-steps (sampling runs it one frame at a time, and
        checkpoints load anywhere); each :meth:`train` moves it and Adam's state over and back.
    """

    def __init__(self, net_cfg: NetworkConfig, lr: float = 1e-3, batch_size: int = 64,
                 iterations: int = 500, weight_decay: float = 1e-5, seed: int = 0, shift: int = 2,
                 threads: Optional[int] = None, aux_weight: float = 0.0, aux_scale: float = 0.1,
                 device: str = "cpu", renormalise: bool = False):
        self.net_cfg = net_cfg
        self.renormalise = renormalise
        self.lr, self.batch_size, self.iterations = lr, batch_size, iterations
        self.shift = shift
        self.aux_weight, self.aux_scale = aux_weight, aux_scale
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        if threads:
            torch.set_num_threads(threads)
        self.net = VisuomotorPolicy(net_cfg)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self.pol_covar = np.eye(net_cfg.action_dim)
        self.normalised = False
        self.history: List[float] = []
        self.device = device
        #: (images uint8, object positions / aux_scale) of the vision pretraining set; with
        #: ``aux_weight > 0`` every S-step minibatch also regresses a minibatch of these
        self.aux_pool: Optional[tuple] = None

    #: attributes added after trainers were first pickled into run states, with the value that
    #: reproduces the old behaviour: a resumed old run gets these
    _ADDED_SINCE_FIRST_PICKLE = {"device": "cpu", "renormalise": False, "aux_weight": 0.0,
                                 "aux_pool": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**self._ADDED_SINCE_FIRST_PICKLE, **state})

    # ------------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        want = self.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"policy.device {want!r}: torch sees no CUDA device "
                               f"(torch {torch.__version__}); use 'cpu' or 'auto'")
        return torch.device(want)

    def _move(self, dev: torch.device) -> None:
        """Network and Adam state to ``dev``."""
        self.net.to(dev)
        for st in self.opt.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and k != "step":
                    st[k] = v.to(dev)

    # ------------------------------------------------------------------------------------------
    def _set_normalisation(self, data: DistillData) -> None:
        """Input/output statistics from ``data``: set on the first S-step; on later ones too
        with ``renormalise`` (function-preserving, :meth:`VisuomotorPolicy.renormalise`)."""
        q = torch.as_tensor(data.joint_state, dtype=torch.float32)
        u = torch.as_tensor(data.actions, dtype=torch.float32)
        stats = (q.mean(0), q.std(0).clamp_min(1e-3), u.mean(0), u.std(0).clamp_min(1e-3))
        if self.normalised:
            self.net.renormalise(*stats)
        else:
            for buf, v in zip((self.net.q_mean, self.net.q_std, self.net.u_mean, self.net.u_std), stats):
                buf.copy_(v)
        self.normalised = True

    def _action_scale(self) -> float:
        """Mean action variance the loss is divided by (the output normalisation's)."""
        return float((self.net.u_std.double() ** 2).mean())

    def _augment(self, img: torch.Tensor) -> torch.Tensor:
        if self.shift <= 0:
            return img
        s = self.shift
        dx, dy = (torch.randint(-s, s + 1, (2,), generator=self.gen)).tolist()
        return torch.roll(img, shifts=(dy, dx), dims=(1, 2))

    def train(self, data: DistillData, iterations: Optional[int] = None) -> Dict[str, float]:
        """Run gradient steps on ``data``; return the mean loss of the first and last 10 %."""
        if len(data) == 0:
            raise ValueError("no training data")
        if not self.normalised or self.renormalise:
            self._set_normalisation(data)
        iters = iterations or self.iterations
        flush_denormals()                    # this thread may predate the import (ROS executors)
        dev = self._device()
        prec = np.asarray(data.precision, dtype=np.float64)
        scale = np.trace(prec.mean(0)) / prec.shape[-1]
        P = torch.as_tensor(prec / max(scale, 1e-12) / self._action_scale(),
                            dtype=torch.float32).to(dev)
        Q = torch.as_tensor(data.joint_state, dtype=torch.float32).to(dev)
        Ut = torch.as_tensor(data.actions, dtype=torch.float32).to(dev)
        imgs = None if data.images is None else torch.as_tensor(data.images).to(dev)
        A = None
        aux_on = self.aux_weight > 0 and self.net.aux is not None and imgs is not None
        if aux_on and data.aux is not None:
            A = torch.as_tensor(data.aux / self.aux_scale, dtype=torch.float32).to(dev)
        pool = self.aux_pool if aux_on else None
        if pool is not None:
            pool = (torch.as_tensor(pool[0]).to(dev), torch.as_tensor(pool[1]).to(dev))
        n = len(data)
        losses = []
        self._move(dev)
        self.net.train()
        try:
            for _ in range(iters):
                if STOP_TRAINING.is_set():
                    raise TrainingStopped("S-step stopped: the process is shutting down")
                idx = torch.randint(0, n, (min(self.batch_size, n),), generator=self.gen).to(dev)
                img = self._augment(imgs[idx]) if imgs is not None else None
                if A is not None:
                    pred, aux = self.net.forward_with_aux(img, Q[idx])
                    loss = weighted_loss(pred, Ut[idx], P[idx]) + self.aux_weight * (
                        (aux - A[idx]) ** 2).sum(1).mean()
                else:
                    pred = self.net(img if img is not None else torch.zeros(0, device=dev), Q[idx])
                    loss = weighted_loss(pred, Ut[idx], P[idx])
                if pool is not None:
                    # half a minibatch of pretraining frames keeps the feature points on the
                    # object everywhere in the region, not only at the training conditions
                    loss = loss + self.aux_weight * self._pool_loss(
                        pool, dev, max(1, self.batch_size // 2))
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append(loss.detach())
        finally:
            self.net.eval()
            self._move(torch.device("cpu"))
        losses = torch.stack(losses).cpu().numpy() if losses else np.zeros(0)
        # policy covariance: inverse of the mean precision (in action units)
        self.pol_covar = np.linalg.inv(prec.mean(0))
        self.pol_covar = 0.5 * (self.pol_covar + self.pol_covar.T)
        k = max(1, iters // 10)
        out = {"loss_start": float(np.mean(losses[:k])), "loss_end": float(np.mean(losses[-k:]))}
        self.history.append(out["loss_end"])
        return out

    def _pool_loss(self, pool, dev, batch: Optional[int] = None) -> torch.Tensor:
        """Mean squared auxiliary error on a minibatch of the pretraining frames."""
        imgs, A = pool
        idx = torch.randint(0, imgs.shape[0], (min(batch or self.batch_size, imgs.shape[0]),),
                            generator=self.gen).to(dev)
        return ((self.net.auxiliary(self._augment(imgs[idx])) - A[idx]) ** 2).sum(1).mean()

    def pretrain(self, images: np.ndarray, objects: np.ndarray, iterations: int,
                 keep: bool = True, lr: Optional[float] = None) -> Dict[str, float]:
        """Vision pretraining: fit the conv layers and the auxiliary head to regress ``objects``
        (n, aux_dim) from ``images`` (n, H, W, 3) uint8 (the MLP is untouched).  With ``keep``
        the frames stay as :attr:`aux_pool` for the S-steps.  ``lr`` (default: the trainer's)
        applies to these steps only: with random conv features the spatial softmax barely moves
        and small steps leave the head predicting the mean position for thousands of steps (at
        64x64, 1e-3 still had not found the cube after 1500 steps; 1e-2 finds it within 200).
        Returns the mean squared error (in units of ``aux_scale`` squared) of the first and last 10 %
        of the steps."""
        flush_denormals()
        if self.net.aux is None:
            raise ValueError("vision pretraining needs a network with an auxiliary head (aux_dim > 0)")
        if len(images) != len(objects) or len(images) == 0:
            raise ValueError(f"need as many pretraining frames as labels, got {len(images)} and "
                             f"{len(objects)}")
        dev = self._device()
        A = np.asarray(objects, dtype=np.float32) / self.aux_scale
        pool = (torch.as_tensor(np.asarray(images, np.uint8)).to(dev), torch.as_tensor(A).to(dev))
        losses = []
        self._move(dev)
        self.net.train()
        base_lr = [g["lr"] for g in self.opt.param_groups]
        for g in self.opt.param_groups:
            g["lr"] = lr or g["lr"]
        try:
            for _ in range(iterations):
                if STOP_TRAINING.is_set():
                    raise TrainingStopped("pretraining stopped: the process is shutting down")
                loss = self._pool_loss(pool, dev)
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                losses.append(loss.detach())
        finally:
            for g, b in zip(self.opt.param_groups, base_lr):
                g["lr"] = b
            self.net.eval()
            self._move(torch.device("cpu"))
        if keep:
            self.aux_pool = (np.asarray(images, np.uint8), A)
        losses = torch.stack(losses).cpu().numpy()
        k = max(1, iterations // 10)
        return {"loss_start": float(np.mean(losses[:k])), "loss_end": float(np.mean(losses[-k:]))}

    @torch.no_grad()
    def predict(self, images: Optional[np.ndarray], joint_state: np.ndarray,
                batch: int = 1024) -> np.ndarray:
        """Mean actions (n, dU) float64 for images (n, H, W, 3) uint8 and joint states (n, dq)."""
        self.net.eval()
        out = []
        for s in range(0, joint_state.shape[0], batch):
            q = torch.as_tensor(joint_state[s:s + batch], dtype=torch.float32)
            img = (torch.as_tensor(images[s:s + batch]) if images is not None else torch.zeros(0))
            out.append(self.net(img, q).double().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def predict_object(self, images: np.ndarray) -> np.ndarray:
        """The auxiliary head's object positions (n, aux_dim), in the units of the pretraining
        labels (:meth:`pretrain` divides them by ``aux_scale``), for images (n, H, W, 3) uint8."""
        if self.net.aux is None:
            raise ValueError("the network has no auxiliary head (aux_dim = 0)")
        self.net.eval()
        return self.net.auxiliary(torch.as_tensor(images)).double().numpy() * self.aux_scale

    def jacobian(self, images: Optional[np.ndarray], joint_state: np.ndarray,
                 batch: int = 1024) -> np.ndarray:
        """∂μ_θ/∂(joint_state) (n, dU, dq) float64 at each input, images held fixed."""
        self.net.eval()
        return joint_jacobian(self.net, images if images is not None else torch.zeros(0),
                              joint_state, batch)

    @torch.no_grad()
    def evaluate_loss(self, data: DistillData) -> float:
        """The precision-weighted loss over all of ``data`` (same normalisation as training)."""
        prec = np.asarray(data.precision, dtype=np.float64)
        scale = np.trace(prec.mean(0)) / prec.shape[-1]
        P = torch.as_tensor(prec / max(scale, 1e-12) / self._action_scale(), dtype=torch.float32)
        pred = torch.as_tensor(self.predict(data.images, data.joint_state), dtype=torch.float32)
        return float(weighted_loss(pred, torch.as_tensor(data.actions, dtype=torch.float32), P))
