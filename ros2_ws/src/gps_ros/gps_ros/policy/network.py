"""The visuomotor policy network: conv → spatial softmax → [feature points, joint state] → MLP → torques.

Levine, Finn, Darrell & Abbeel 2016 (*End-to-End Training of Deep Visuomotor Policies*), §4: a few
convolution layers whose last feature maps are turned into expected 2-D image positions by a spatial
softmax (Finn et al. 2016, *Deep Spatial Autoencoders*), concatenated with the robot's joint state
and mapped to actions by fully connected layers.  Inputs and outputs are normalised with statistics
stored in the module, so a checkpoint or TorchScript export is self-contained.

Shapes: images (B, H, W, 3) uint8 or (B, 3, H, W) float in [0, 1]; joint state (B, dq); actions (B, dU).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Tuple

import torch
import torch.nn as nn

def flush_denormals() -> None:
    """Flush float32 denormals to zero on the calling thread (and the threads it creates later).

    A trained spatial softmax is peaked: most of its 4096 attention weights per channel underflow
    into denormals, and on x86 every operation on one takes a slow microcode path.  On the 2-core
    Xeon of our development machines a vision S-step ran 6x slower on real camera frames than on
    random ones (4.2 instead of 25.8 Adam steps/s, ``bench/bench_policy.py --denormals``).  The flag
    lives in each thread's MXCSR register, so it is set when this module is imported (covering the
    importing thread and every thread started after it: samplers, policy_node) and again by every
    :class:`PolicyTrainer` S-step, which may run on an executor thread started before the import.
    It changes float32 rounding of tiny values, hence results compared with runs made without it.
    """
    torch.set_flush_denormal(True)


flush_denormals()


def spatial_softmax(features: torch.Tensor, temperature: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Expected image coordinates of each channel's softmax: (B, C, H, W) -> (B, C, 2) as (x, y).

    Coordinates are in [-1, 1]: x grows to the right (columns), y downwards (rows); pixel centres.
    """
    B, C, H, W = features.shape
    logits = features.reshape(B, C, H * W) / temperature
    attn = torch.softmax(logits, dim=-1).reshape(B, C, H, W)
    xs = torch.linspace(-1.0, 1.0, W, device=features.device, dtype=features.dtype)
    ys = torch.linspace(-1.0, 1.0, H, device=features.device, dtype=features.dtype)
    ex = (attn.sum(dim=2) * xs).sum(dim=-1)          # marginal over rows, then E[x]
    ey = (attn.sum(dim=3) * ys).sum(dim=-1)
    return torch.stack([ex, ey], dim=-1)


@dataclass
class NetworkConfig:
    """Architecture of :class:`VisuomotorPolicy` (saved with every checkpoint)."""

    image_size: Tuple[int, int] = (64, 64)      # (H, W)
    joint_dim: int = 14
    action_dim: int = 7
    conv_channels: List[int] = field(default_factory=lambda: [32, 32, 16])
    conv_kernels: List[int] = field(default_factory=lambda: [5, 3, 3])
    conv_strides: List[int] = field(default_factory=lambda: [2, 1, 1])
    hidden: List[int] = field(default_factory=lambda: [64, 64])
    use_image: bool = True                       # False: the blind ablation (joint state only)
    aux_dim: int = 0                             # >0: head regressing e.g. the object position

    def to_dict(self) -> dict:
        return asdict(self)


class VisuomotorPolicy(nn.Module):
    """π_θ(u | image, joint state): deterministic mean; the covariance is kept by the trainer."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        self.cfg = cfg
        layers = []
        c_in = 3
        H, W = cfg.image_size
        for c, k, s in zip(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides):
            layers += [nn.Conv2d(c_in, c, k, stride=s), nn.ReLU()]
            c_in = c
            H, W = (H - k) // s + 1, (W - k) // s + 1
        self.conv = nn.Sequential(*layers[:-1])  # no ReLU before the spatial softmax
        self.n_points = c_in if cfg.use_image else 0
        self.log_temperature = nn.Parameter(torch.zeros(()))
        mlp, d = [], 2 * self.n_points + cfg.joint_dim
        for h in cfg.hidden:
            mlp += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.mlp = nn.Sequential(*mlp)
        self.head = nn.Linear(d, cfg.action_dim)
        self.aux = nn.Linear(2 * self.n_points, cfg.aux_dim) if cfg.aux_dim and cfg.use_image else None
        # normalisation statistics (set from data by the trainer)
        self.register_buffer("q_mean", torch.zeros(cfg.joint_dim))
        self.register_buffer("q_std", torch.ones(cfg.joint_dim))
        self.register_buffer("u_mean", torch.zeros(cfg.action_dim))
        self.register_buffer("u_std", torch.ones(cfg.action_dim))

    @torch.no_grad()
    def renormalise(self, q_mean: torch.Tensor, q_std: torch.Tensor, u_mean: torch.Tensor,
                    u_std: torch.Tensor) -> None:
        """New input/output normalisation statistics, with the first layer's joint-state columns
        and the head rescaled so that the network computes the same function as before."""
        first = self.mlp[0] if len(self.mlp) else self.head
        cols = slice(2 * self.n_points, 2 * self.n_points + self.cfg.joint_dim)
        Wq = first.weight[:, cols].clone()
        # W (q - m0) / s0 = W diag(s1 / s0) (q - m1) / s1 + W (m1 - m0) / s0
        first.bias += Wq @ ((q_mean - self.q_mean) / self.q_std)
        first.weight[:, cols] = Wq * (q_std / self.q_std)
        # head(h) s0 + m0 = [(head(h) s0 + m0 - m1) / s1] s1 + m1
        self.head.bias.copy_((self.head.bias * self.u_std + self.u_mean - u_mean) / u_std)
        self.head.weight *= (self.u_std / u_std)[:, None]
        self.q_mean.copy_(q_mean)
        self.q_std.copy_(q_std)
        self.u_mean.copy_(u_mean)
        self.u_std.copy_(u_std)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]; float (B, 3, H, W) passes through."""
        if images.dtype == torch.uint8:
            return images.permute(0, 3, 1, 2).float() / 255.0
        return images

    def feature_points(self, images: torch.Tensor) -> torch.Tensor:
        """(B, n_points, 2) expected image positions of the last conv layer's channels."""
        feats = self.conv(self.preprocess(images))
        return spatial_softmax(feats, torch.exp(self.log_temperature))

    def forward(self, images: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """Mean torques (B, dU)."""
        q = (joint_state - self.q_mean) / self.q_std
        if self.n_points:
            pts = self.feature_points(images).flatten(1)
            h = torch.cat([pts, q], dim=1)
        else:
            h = q
        return self.head(self.mlp(h)) * self.u_std + self.u_mean

    def feature_points_to_pixels(self, pts):
        """Feature points in [-1, 1] (x, y) of the last conv map -> input-image pixel coordinates
        (column, row), through the receptive-field centres of the valid (unpadded) convolutions:
        the last map does not span the whole image, so a plain rescaling is off by several px."""
        offset, stride = 0.0, 1.0
        size = list(self.cfg.image_size)                  # (H, W) of the current map
        for k, s in zip(self.cfg.conv_kernels, self.cfg.conv_strides):
            offset += (k - 1) / 2 * stride
            stride *= s
            size = [(n - k) // s + 1 for n in size]
        H, W = size
        x = (pts[..., 0] + 1) / 2 * (W - 1)
        y = (pts[..., 1] + 1) / 2 * (H - 1)
        return offset + stride * x, offset + stride * y

    def feature_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, n_points, 2) feature points in pixel coordinates of the input image, as (u, v) =
        (column, row) with pixel centres on integers (OpenCV's convention: ``cv2.circle((u, v))``).
        The TorchScript export carries this method (:func:`gps_ros.policy.export.export_torchscript`)."""
        u, v = self.feature_points_to_pixels(self.feature_points(images))
        return torch.stack([u, v], dim=-1)

    def forward_with_aux(self, images: torch.Tensor, joint_state: torch.Tensor):
        """(mean torques, auxiliary head output) from one pass through the conv layers."""
        q = (joint_state - self.q_mean) / self.q_std
        pts = self.feature_points(images).flatten(1)
        u = self.head(self.mlp(torch.cat([pts, q], dim=1))) * self.u_std + self.u_mean
        return u, self.aux(pts)

    def auxiliary(self, images: torch.Tensor) -> torch.Tensor:
        """The vision-pretraining head (e.g. object position) from the feature points."""
        if self.aux is None:
            raise RuntimeError("this network has no auxiliary head (aux_dim = 0 or use_image = False)")
        return self.aux(self.feature_points(images).flatten(1))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
