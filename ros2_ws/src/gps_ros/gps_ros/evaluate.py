"""Evaluate a trained global policy on held-out targets: ``gps-ros eval``.

Held-out targets are drawn uniformly inside ``agent.target_region`` with the given seed, rejecting
any within ``min_separation`` of a training target, so the policy is never scored on a training
condition.  The *policy* runs (noiseless mean actions), not the local controllers.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import List, Optional

import numpy as np

from .experiment import Experiment, ExperimentError
from .sample import atomic_write_bytes

log = logging.getLogger(__name__)

SUCCESS_DISTANCE = 0.05


def held_out_targets(cfg, n: int, seed: int, min_separation: float = 0.02) -> np.ndarray:
    """(n, 3) targets uniform in ``cfg.agent.target_region``, away from the training targets."""
    region = cfg.agent.target_region
    if region is None:
        raise ExperimentError("the run's config has no agent.target_region to draw held-out "
                              "targets from")
    lo, hi = np.asarray(region.low, float), np.asarray(region.high, float)
    train = np.array([c.target for c in cfg.agent.conditions], float)
    rng = np.random.default_rng(seed)
    out: List[np.ndarray] = []
    while len(out) < n:
        p = rng.uniform(lo, hi)
        if np.min(np.linalg.norm(train - p, axis=1)) >= min_separation:
            out.append(p)
    return np.array(out)


def evaluate(run: str | Path, n_targets: int, seed: int, out: Optional[str | Path] = None,
             strip: bool = True) -> dict:
    """Run the run's global policy on ``n_targets`` held-out targets; write ``out`` (JSON)."""
    from .agents import SimAgent
    from .config import ConditionConfig

    exp, policy = _load_policy(run)
    cfg = exp.cfg
    targets = held_out_targets(cfg, n_targets, seed)
    agent_cfg = cfg.agent.model_copy(deep=True)
    agent_cfg.conditions = [ConditionConfig(target=t.tolist()) for t in targets]
    agent_cfg.gui = False
    agent = SimAgent(agent_cfg)
    try:
        actor = policy.actor()
        dists, first = [], None
        for m in range(len(targets)):
            tr = agent.sample(actor, m, None, source="policy")
            d = float(agent.sim.ee_distance(tr.X[0, -1]))
            dists.append(d)
            if first is None:
                first = tr
    finally:
        agent.close()
    dists = np.array(dists)
    result = {
        "run": str(run), "seed": seed, "targets": targets.tolist(),
        "final_distance": dists.tolist(),
        "success_rate": float(np.mean(dists < SUCCESS_DISTANCE)),
        "mean_final_distance": float(dists.mean()),
        "success_distance": SUCCESS_DISTANCE,
        "uses_image": bool(policy.trainer.net.n_points > 0),
    }
    if out is not None:
        out = Path(out)
        atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
        if strip and first is not None and "image" in first.obs:
            write_rollout_strip(policy, first, out.with_suffix(".png"))
    return result


def _load_policy(run):
    exp = Experiment.open(run)
    if exp.cfg.algorithm.type == "lqr_flm":
        raise ExperimentError(f"{run} trained local controllers only (lqr_flm); there is no "
                              "global policy")
    state = exp.load_state()
    if state is None or "policy" not in state or not state["policy"].trained:
        raise ExperimentError(f"{run} has no trained policy yet (finish at least one iteration)")
    policy = state["policy"]
    from .ros.proxies import RosPolicyStage

    if isinstance(policy, RosPolicyStage):       # trained over ROS: the network is in trainer_node's files
        policy = _policy_from_trainer_checkpoint(run, exp, policy)
    return exp, policy


def _trainer_files(run, exp: Experiment, stage) -> tuple:
    """(policy_NNNN.pt, policy_NNNN.ckpt) the trainer_node wrote for the stage's last S-step: in
    the run's own ``policy/`` directory (where coordinator_node points the trainer), else where
    the stage recorded them."""
    name = Path(stage.export_path).name
    local = exp.root / "policy" / name
    for pt in (local, Path(stage.export_path)):
        if pt.is_file() and pt.with_suffix(".ckpt").is_file():
            return pt, pt.with_suffix(".ckpt")
    missing = next(p for p in (local.with_suffix(".ckpt"), local) if not p.is_file())
    raise ExperimentError(f"{run}: the policy was trained by the ROS trainer_node and its "
                          f"checkpoint {missing} is missing (copy {local.stem}.ckpt and .pt from the "
                          f"trainer's checkpoint directory {Path(stage.export_path).parent} on the "
                          f"machine it ran on into {local.parent})")


def _policy_from_trainer_checkpoint(run, exp: Experiment, stage):
    """A :class:`GlobalPolicy` rebuilt from the trainer_node's ``policy_NNNN.ckpt`` (state dict,
    network config, covariance) for a run whose state holds a :class:`RosPolicyStage`; its
    ``trainer_export`` is the trainer's TorchScript file of the same network."""
    import torch

    from .policy.distill import PolicyTrainer
    from .policy.global_policy import GlobalPolicy
    from .policy.network import NetworkConfig

    pt, ckpt = _trainer_files(run, exp, stage)
    try:
        blob = torch.load(ckpt, map_location="cpu", weights_only=False)  # our own file, like state.pkl
        trainer = PolicyTrainer(NetworkConfig(**blob["config"]))
        trainer.net.load_state_dict(blob["state_dict"])
    except Exception as err:  # noqa: BLE001 - corrupt / foreign file: one line
        detail = " ".join(str(err).split())
        raise ExperimentError(f"{ckpt} is not a readable trainer_node checkpoint "
                              f"({type(err).__name__}: {detail})") from None
    trainer.net.eval()
    cov = stage.pol_covar if stage.pol_covar is not None else blob["pol_covar"]
    trainer.pol_covar = np.asarray(cov, dtype=np.float64)
    joint_idx = np.asarray(stage.joint_idx)
    if len(joint_idx) != trainer.net.cfg.joint_dim:
        raise ExperimentError(f"{ckpt}: the network takes {trainer.net.cfg.joint_dim} state inputs, "
                              f"the run's policy stage feeds it {len(joint_idx)}")
    policy = GlobalPolicy(trainer, joint_idx, image_key=stage.image_key)
    policy.trained = True
    policy.trainer_export = pt
    return policy


def export_policy(run: str | Path, out: Optional[str | Path] = None) -> tuple:
    """Write the run's policy as TorchScript (``DIR/policy.pt`` by default); check that the
    export reproduces the checkpoint's actions on the last iteration's observations.  Returns
    (path, max |action difference|)."""
    import torch

    from .policy.export import export_torchscript, load_torchscript
    from .sample import Trajectories

    exp, policy = _load_policy(run)
    path = Path(out) if out is not None else exp.root / "policy.pt"
    export_torchscript(policy.trainer.net, path)
    module, _ = load_torchscript(path)
    it = exp.load_state()["iteration"]
    tr = Trajectories.load(exp.iteration_dir(it) / "trials_c00.npz")
    img, q = policy._inputs(tr)

    def actions(mod):
        with torch.no_grad():
            return mod(torch.as_tensor(img) if img is not None else torch.zeros(0, 1, 1, 3, dtype=torch.uint8),
                       torch.as_tensor(q, dtype=torch.float32)).double().numpy()

    trainer_export = getattr(policy, "trainer_export", None)   # a ROS-trained run
    if trainer_export is None:
        ref, what = policy.trainer.predict(img, q), "the checkpoint"
    else:
        ref, what = actions(load_torchscript(trainer_export)[0]), f"the trainer's export {trainer_export}"
    got = actions(module)
    err = float(np.abs(got - ref).max())
    if err > 1e-4 * max(1.0, float(np.abs(ref).max())):
        raise ExperimentError(f"the export of {run} does not reproduce {what} "
                              f"(max action difference {err:.3g})")
    return path, err


def write_rollout_strip(policy, tr, path: Path, frames: int = 8, scale: int = 4) -> None:
    """A PNG strip of one rollout's camera frames with the network's feature points drawn."""
    import torch
    from PIL import Image, ImageDraw

    imgs = tr.obs["image"][0]
    T = imgs.shape[0]
    idx = np.linspace(0, T - 1, frames).astype(int)
    with torch.no_grad():
        pts = policy.trainer.net.feature_points(torch.as_tensor(imgs[idx])).numpy()  # (F, C, 2)
    H, W = imgs.shape[1:3]
    canvas = Image.new("RGB", (W * scale * frames, H * scale))
    for j, t in enumerate(idx):
        im = Image.fromarray(imgs[t]).resize((W * scale, H * scale), Image.NEAREST)
        d = ImageDraw.Draw(im)
        cols, rows = policy.trainer.net.feature_points_to_pixels(pts[j])
        for c, r in zip(cols, rows):
            u, v = (c + 0.5) * scale, (r + 0.5) * scale
            d.ellipse([u - 3, v - 3, u + 3, v + 3], outline=(255, 255, 0))
        canvas.paste(im, (j * W * scale, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
