"""Export a trained policy for deployment (the policy_node loads the TorchScript file)."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_write_bytes
from .network import VisuomotorPolicy


def export_torchscript(net: VisuomotorPolicy, path: str | Path) -> Path:
    """Script ``net`` (normalisation included) and write it atomically; the architecture is stored
    as the ``config.json`` extra file.  Inputs of the exported module: images (B, H, W, 3) uint8 and
    joint state (B, dq) float32; output: torques (B, dU) float32.

    A network that sees images also gets the method ``feature_pixels(images)``: images (B, H, W, 3)
    uint8 of the network's ``image_size`` -> (B, n_points, 2) float32, the spatial-softmax feature
    points as (u, v) = (column, row) pixel coordinates of that input image, pixel centres on
    integers (see :meth:`VisuomotorPolicy.feature_pixels`; for overlays,
    :func:`gps_ros.overlay.draw_feature_points`).  Exports written before it existed lack the
    method: check with :func:`has_feature_pixels`."""
    net = net.eval()
    H, W = net.cfg.image_size
    example = (torch.zeros(1, H, W, 3, dtype=torch.uint8), torch.zeros(1, net.cfg.joint_dim))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript still loads in C++/ROS
        methods = {"forward": example}
        if net.n_points:
            methods["feature_pixels"] = example[:1]
        traced = torch.jit.trace_module(net, methods, check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"config.json": json.dumps(net.cfg.to_dict())})
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_torchscript(path: str | Path):
    """(module, config dict) of an exported policy."""
    extra = {"config.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), _extra_files=extra, map_location="cpu")
    return module, json.loads(extra["config.json"])


def has_feature_pixels(module) -> bool:
    """Whether a loaded export has ``feature_pixels`` (False for a blind network's export and for
    exports older than the method)."""
    try:
        return bool(module._c._has_method("feature_pixels"))
    except AttributeError:                    # not a TorchScript module: e.g. the eager network
        return callable(getattr(module, "feature_pixels", None))


def write_policy_checkpoint(policy, checkpoint_dir: str, iteration: int):
    """Write ``policy_NNNN.ckpt`` (state dict + covariance) and ``policy_NNNN.pt`` (TorchScript)
    atomically; returns both paths."""
    d = Path(checkpoint_dir)
    d.mkdir(parents=True, exist_ok=True)
    net = policy.trainer.net
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "config": net.cfg.to_dict(),
                "pol_covar": policy.covariance(), "iteration": iteration}, buf)
    ckpt = d / f"policy_{iteration:04d}.ckpt"
    atomic_write_bytes(ckpt, buf.getvalue())
    exp = export_torchscript(net, d / f"policy_{iteration:04d}.pt")
    return str(ckpt), str(exp)
