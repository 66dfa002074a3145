"""Visuomotor policy figures: CNN inference latency and distillation throughput, one CPU thread.

    python bench/bench_policy.py [--frames 2000] [--steps 200] [--config CFG.yaml] [--device cuda]
                                 [--denormals] [--save-frames F.npz | --load-frames F.npz]

All on real camera frames of the task's scene (random cube positions and arm poses).
1. Distillation: Adam steps per second and training samples per second at the config's batch size
   (the S-step cost is iterations x step time), on --device; with the config's vision pretraining
   also the pretraining steps (and its frames join every S-step minibatch).
2. Inference with the network just trained: one 64x64 RGB frame + joint state -> torques, batch 1,
   eager PyTorch and the TorchScript export (what policy_node runs); p50 / p99 over --frames calls
   (target p99 <= 3 ms).
The architecture comes from the policy section of --config (default: panda_vision.yaml).
--save-frames writes the rendered frames (and cube positions) to an .npz; --load-frames reads them
instead of rendering, for a machine without PyBullet (a GPU box that only runs the S-step).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ros2_ws" / "src" / "gps_ros"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gps_ros.config import load_config  # noqa: E402
from gps_ros.policy.distill import DistillData, PolicyTrainer  # noqa: E402
from gps_ros.policy.export import export_torchscript, load_torchscript  # noqa: E402
from gps_ros.policy.network import NetworkConfig  # noqa: E402


def percentiles(ts):
    a = np.asarray(ts) * 1e3
    return np.percentile(a, 50), np.percentile(a, 99), a.max()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "ros2_ws/src/gps_ros/config/panda_vision.yaml")
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200, help="distillation steps to time")
    ap.add_argument("--device", default="cpu", help="where the distillation steps run "
                    "(cpu, cuda, auto); inference is always timed on one CPU thread")
    ap.add_argument("--denormals", action="store_true", help="keep float32 denormals (torch's "
                    "default; gps_ros flushes them to zero) to see what that costs")
    frames_io = ap.add_mutually_exclusive_group()
    frames_io.add_argument("--save-frames", type=Path, metavar="NPZ",
                           help="write the rendered scene frames here")
    frames_io.add_argument("--load-frames", type=Path, metavar="NPZ",
                           help="use frames written by --save-frames instead of rendering")
    args = ap.parse_args()
    if args.load_frames is not None and not args.load_frames.is_file():
        ap.error(f"--load-frames {args.load_frames}: no such file")
    torch.set_num_threads(1)
    if args.denormals:                   # undo what importing the network and every S-step do
        import gps_ros.policy.distill as distill

        distill.flush_denormals = lambda: None
        torch.set_flush_denormal(False)
    cfg = load_config(args.config)
    pc, cam = cfg.policy, cfg.agent.camera
    H, W = (cam.height, cam.width) if cam is not None else (64, 64)
    net_cfg = NetworkConfig(image_size=(H, W), joint_dim=14, action_dim=7,
                            conv_channels=list(pc.conv_channels), conv_kernels=list(pc.conv_kernels),
                            conv_strides=list(pc.conv_strides), hidden=list(pc.hidden),
                            use_image=pc.use_image,
                            aux_dim=3 if pc.aux_weight > 0 and pc.use_image else 0)
    trainer = PolicyTrainer(net_cfg, lr=pc.lr, batch_size=pc.batch_size, iterations=args.steps,
                            shift=pc.shift, aux_weight=pc.aux_weight, device=args.device)
    rng = np.random.default_rng(0)
    # real camera frames of the task's scene (random cube positions and arm poses, as the vision
    # pretraining renders them): random-noise images would hide how a trained, peaked spatial
    # softmax behaves (denormals, see gps_ros/policy/network.py)
    if args.load_frames is not None:
        with np.load(args.load_frames) as z:
            frames, objects = z["frames"], z["objects"]
        if frames.shape[1:3] != (H, W):
            ap.error(f"--load-frames {args.load_frames}: frames are {frames.shape[1]}x"
                     f"{frames.shape[2]}, the config's camera is {H}x{W}")
        k = len(frames)
        print(f"camera frames of the scene: {k} loaded from {args.load_frames}")
    else:
        from gps_ros.policy.pretrain import render_pretrain_set

        k = max(pc.pretrain_frames, 500)
        t0 = time.perf_counter()
        frames, objects = render_pretrain_set(cfg.agent, k, seed=0,
                                              joint_noise=pc.pretrain_joint_noise)
        print(f"camera frames of the scene: {k} rendered in {time.perf_counter() - t0:.1f} s")
        if args.save_frames is not None:
            np.savez_compressed(args.save_frames, frames=frames, objects=objects)
            print(f"  saved to {args.save_frames}")
    n = 4500 * pc.replay           # one iteration's frames (9 conditions x 5 trials x 100 steps)
    pick = rng.integers(k, size=n)
    data = DistillData(frames[pick], rng.normal(size=(n, 14)), rng.normal(size=(n, 7)),
                       np.broadcast_to(np.eye(7), (n, 7, 7)).copy(),
                       objects[pick] if net_cfg.aux_dim else None)
    if pc.pretrain_frames and net_cfg.aux_dim:
        t0 = time.perf_counter()
        trainer.pretrain(frames, objects, iterations=args.steps, lr=pc.pretrain_lr)
        dt = time.perf_counter() - t0
        print(f"vision pretraining: {args.steps / dt:.1f} steps/s; {pc.pretrain_iterations} steps "
              f"~ {pc.pretrain_iterations * dt / args.steps:.1f} s ({trainer._device()})")
    trainer.train(data, iterations=5)                    # normalisation, warm-up
    t0 = time.perf_counter()
    trainer.train(data, iterations=args.steps)
    dt = time.perf_counter() - t0
    print(f"network: {sum(p.numel() for p in trainer.net.parameters())} parameters, "
          f"conv {list(pc.conv_channels)}, MLP {list(pc.hidden)}, {H}x{W} input")
    print(f"distillation: {args.steps / dt:.1f} steps/s, {args.steps * pc.batch_size / dt:.0f} "
          f"samples/s (batch {pc.batch_size}); an S-step of {pc.iterations} steps ~ "
          f"{pc.iterations * dt / args.steps:.1f} s ({trainer._device()}"
          + (", with the pretraining frames in every minibatch" if trainer.aux_pool is not None
             else "") + ")")

    net = trainer.net.eval()
    img = torch.as_tensor(data.images[:1])
    q = torch.as_tensor(data.joint_state[:1], dtype=torch.float32)
    with tempfile.TemporaryDirectory() as d:
        export_torchscript(net, Path(d) / "p.pt")
        ts, _ = load_torchscript(Path(d) / "p.pt")
    print(f"{'inference, batch 1':28s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name, f in (("eager PyTorch", net), ("TorchScript export", ts)):
        with torch.no_grad():
            for _ in range(50):
                f(img, q)
            times = []
            for i in range(args.frames):
                frame = torch.as_tensor(frames[i % k:i % k + 1])
                t0 = time.perf_counter()
                f(frame, q)
                times.append(time.perf_counter() - t0)
        p50, p99, mx = percentiles(times)
        print(f"{name:28s} {p50:8.3f} {p99:8.3f} {mx:8.3f}   (target p99 <= 3 ms)")


if __name__ == "__main__":
    main()
