"""Evaluate a trained global policy on held-out targets: ``gps-ros eval``.

Held-out targets are drawn uniformly inside ``agent.target_region`` with the given seed, rejecting
any within ``min_separation`` of a training target, so the policy is never scored on a training
condition.  The *policy* runs (noiseless mean actions), not the local controllers.  ``--video``
adds an MP4 of the rollouts: the frames the policy saw, with its feature points
(:mod:`gps_ros.overlay`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from .atomic import atomic_write_bytes
from .experiment import Experiment, ExperimentError, load_controllers

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


def evaluate_controllers(run: str | Path, agent) -> list:
    """Noiseless rollouts, one per condition, of every iteration's new local controllers
    (``iterations/NNNN/controllers.npz``) of a run, on ``agent`` (a SimAgent of the run's task).

    Returns one ``(iteration, trials, final, success)`` per iteration: ``trials`` the training
    trials run up to that update, ``final`` (M,) the task's score at the last step (the peg's
    insertion depth in m, else the EE distance in m) and ``success`` (M,) bool (inserted, or the
    distance below 2 cm).  These rollouts are evaluations, not training trials."""
    run = Path(run)
    rows = Experiment.open(run).read_metrics()
    sim = agent.sim
    out = []
    for row in rows:
        it = row["iteration"]
        ctrls = load_controllers(run / "iterations" / f"{it:04d}" / "controllers.npz")
        x = np.stack([agent.sample(c, m, None, source="evaluation").X[0, -1] for m, c in enumerate(ctrls)])
        if getattr(sim, "peg", None) is not None:
            final, ok = sim.insertion(x)
        else:
            final = sim.ee_distance(x)
            ok = final < 0.02
        out.append((it, row["trials"], np.asarray(final), np.asarray(ok)))
    return out


def evaluate(run: str | Path, n_targets: int, seed: int, out: Optional[str | Path] = None,
             strip: bool = True, video: Optional[str | Path] = None, video_scale: int = 4,
             video_fps: Optional[float] = None, camera: Optional[str] = None) -> dict:
    """Run the run's global policy on ``n_targets`` held-out targets; write ``out`` (JSON).

    With ``video``, also an MP4 of every rollout, one after another: the camera frames the policy
    saw, upscaled ``video_scale`` times, with its feature points and a caption line (target, step,
    distance to the target), at ``video_fps`` (default: the control rate, i.e. real time).

    ``camera`` ("WxH:TRANSPORT", e.g. "640x480:jpeg"): the policy sees each frame the way it would
    through a real camera: rendered at W x H, sent as TRANSPORT (a raw encoding, jpeg or png) and
    brought back through the config camera's :class:`~gps_ros.image_pipeline.ImagePipeline`."""
    from .agents import SimAgent
    from .config import ConditionConfig

    exp, policy = _load_policy(run)
    cfg = exp.cfg
    net = getattr(getattr(policy, "trainer", None), "net", None)     # None: a SAC actor
    if video is not None and net is None:
        raise ExperimentError(f"{run}: --video shows what a visuomotor network saw; this run's "
                              f"policy ({cfg.algorithm.type}) sees no images")
    if video is not None and cfg.agent.camera is None:
        raise ExperimentError(f"{run}: --video needs camera frames and the run's config has no "
                              "agent.camera")
    if video is not None and not Path(video).parent.is_dir():
        raise ExperimentError(f"cannot write the video {video}: directory {Path(video).parent} "
                              "does not exist")
    targets = held_out_targets(cfg, n_targets, seed)
    agent_cfg = cfg.agent.model_copy(deep=True)
    agent_cfg.conditions = [ConditionConfig(target=t.tolist()) for t in targets]
    agent_cfg.gui = False
    agent = SimAgent(agent_cfg)
    if camera:
        try:
            agent.camera = _transported_camera(agent.camera, cfg.agent.camera, camera)
        except (ValueError, AttributeError) as err:
            agent.close()
            raise ExperimentError(f"--camera {camera}: {err}") from None
    rollouts = []                    # (frames the policy saw (T, H, W, 3), distance per step (T,))
    try:
        actor = policy.actor()
        dists, first = [], None
        peg = getattr(agent.sim, "peg", None) is not None
        depths, inserted = [], []
        for m in range(len(targets)):
            tr = agent.sample(actor, m, None, source="policy")
            d = float(agent.sim.ee_distance(tr.X[0, -1]))
            dists.append(d)
            if peg:                      # success is insertion, not a distance
                depth, ok = agent.sim.insertion(tr.X[0, -1])
                depths.append(float(depth))
                inserted.append(bool(ok))
            if first is None:
                first = tr
            if video is not None:
                rollouts.append((tr.obs["image"][0], agent.sim.ee_distance(tr.X[0])))
    finally:
        agent.close()
    dists = np.array(dists)
    result = {
        "run": str(run), "seed": seed, "targets": targets.tolist(),
        "final_distance": dists.tolist(),
        "success_rate": float(np.mean(dists < SUCCESS_DISTANCE)),
        "mean_final_distance": float(dists.mean()),
        "success_distance": SUCCESS_DISTANCE,
        "uses_image": bool(net is not None and net.n_points > 0),
        "camera": camera or "direct",
    }
    from .provenance import environment

    sessions = exp.environments()
    result.update(trained_with=sessions[-1] if sessions else None, evaluated_with=environment())
    if inserted:                         # the peg task: held-out holes, success = inserted
        result.update(success_rate=float(np.mean(inserted)), success="inserted",
                      insertion_depth=depths, inserted=inserted)
    if video is not None:
        t0 = time.perf_counter()
        fps = float(video_fps) if video_fps is not None else float(cfg.agent.control_rate_hz)
        path, n = write_eval_video(net, rollouts, video, fps, video_scale)
        result.update(video=str(path), video_frames=n, video_fps=fps,
                      video_seconds=time.perf_counter() - t0)
    if out is not None:
        out = Path(out)
        atomic_write_bytes(out, (json.dumps(result, indent=1) + "\n").encode())
        if strip and first is not None and "image" in first.obs:
            write_rollout_strip(policy, first, out.with_suffix(".png"))
    return result


def _transported_camera(sim_camera, camera_cfg, spec: str):
    """``spec`` "WxH:TRANSPORT" -> a camera rendering at W x H and seen through the pipeline."""
    from .image_pipeline import ImagePipeline, TransportedCamera
    from .sim.camera import Camera

    if sim_camera is None:
        raise ValueError("the run's config has no agent.camera")
    size, _, transport = spec.partition(":")
    try:
        W, H = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError("expected WxH:TRANSPORT, e.g. 640x480:jpeg") from None
    if W < 1 or H < 1:
        raise ValueError("the camera size must be positive")
    return TransportedCamera(Camera(sim_camera.cfg, width=W, height=H),
                             ImagePipeline.from_camera(camera_cfg), transport or "bgr8")


def _feature_pixels(net, images: np.ndarray) -> Optional[np.ndarray]:
    """(N, n_points, 2) feature points (u, v) in pixels of ``images`` (N, H, W, 3); None for a
    blind network."""
    import torch

    if not net.n_points:
        return None
    with torch.no_grad():
        return net.feature_pixels(torch.as_tensor(images)).numpy()


def write_eval_video(net, rollouts, path: str | Path, fps: float, scale: int = 4) -> tuple:
    """MP4 of evaluation rollouts ``[(frames (T, H, W, 3) uint8, distance to target (T,)), ...]``
    one after another, with the network's feature points and a caption per frame; (path, frames)."""
    from .overlay import VideoError, draw_feature_points, write_video

    def frames():
        for m, (imgs, dist) in enumerate(rollouts):
            pts = _feature_pixels(net, imgs)
            T = len(imgs)
            for t in range(T):
                text = f"target {m + 1}/{len(rollouts)}  step {t + 1}/{T}  d {100 * dist[t]:.1f} cm"
                yield draw_feature_points(imgs[t], None if pts is None else pts[t], scale, text=text)

    try:
        return write_video(path, frames(), fps)
    except VideoError as err:
        raise ExperimentError(str(err)) from None


def _load_policy(run):
    from .mbrl import MODEL_BASED

    exp = Experiment.open(run)
    if exp.cfg.algorithm.type == "lqr_flm":
        raise ExperimentError(f"{run} trained local controllers only (lqr_flm); there is no "
                              "global policy")
    state = exp.load_state()
    if exp.cfg.algorithm.type in MODEL_BASED:
        if state is None:
            raise ExperimentError(f"{run} has no trained policy yet (finish at least one iteration)")
        from .mbrl.sac import SACPolicy

        return exp, SACPolicy(state["model_based"]["agent"])
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
    (path, max ``|action difference|``)."""
    import torch

    from .policy.export import export_torchscript, load_torchscript
    from .sample import Trajectories

    exp, policy = _load_policy(run)
    path = Path(out) if out is not None else exp.root / "policy.pt"
    if getattr(policy, "sac", None) is not None:
        return policy.export(path, Trajectories.load(
            exp.iteration_dir(exp.load_state()["iteration"]) / "trials_c00.npz").X)
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
    from .overlay import draw_feature_points, encode_png

    imgs = tr.obs["image"][0]
    idx = np.linspace(0, imgs.shape[0] - 1, frames).astype(int)
    pts = _feature_pixels(policy.trainer.net, imgs[idx])
    tiles = [draw_feature_points(imgs[t], None if pts is None else pts[j], scale)
             for j, t in enumerate(idx)]
    atomic_write_bytes(path, encode_png(np.concatenate(tiles, axis=1)))
