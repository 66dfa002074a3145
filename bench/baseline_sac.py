"""Model-free baseline: SAC (stable-baselines3) on the same Panda reach task as GPS.

    pip install -e 'ros2_ws/src/gps_ros[baseline]'       # stable-baselines3 (+ torch; CPU is fine)
    python bench/baseline_sac.py --episodes 600 --max-minutes 35 --gps-run /tmp/gps_ref \
        --out runs/baseline_sac

Trains SAC (Haarnoja et al. 2018, *Soft Actor-Critic Algorithms and Applications*) on the registered
Gymnasium env ``"GpsRos/PandaReach-v0"`` built from the same config as GPS (same conditions,
horizon T, control rate, torque limits; the env's reward is the GPS distance penalty on the EE
origin plus a small torque penalty).  Each training episode starts a condition drawn uniformly.
Every ``--eval-every`` training episodes the deterministic policy (the squashed Gaussian's mean)
is rolled out once per condition and the final EE distance of each is recorded.  Training stops
when every condition is below ``--threshold`` (2 cm), or when the episode or wall-time budget is
spent.  Evaluation rollouts are not counted as training trials (they are listed separately).

Writes ``OUT/sac_curve.csv`` and ``OUT/sac_result.json`` (trials vs distance, summary) and
``OUT/sac_vs_gps.png`` (final distance vs trials; with ``--gps-run DIR`` also GPS's curve from
``DIR/metrics.jsonl``, where GPS's distance per condition is the mean over that iteration's noisy
trials).  ``--plot-only`` redraws the figure from an existing ``sac_curve.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "ros2_ws/src/gps_ros/config/panda_reach.yaml"


def evaluate(model, env, n_conditions: int) -> list:
    """Final EE distance (m) of one deterministic rollout per condition."""
    out = []
    for m in range(n_conditions):
        obs, info = env.reset(options={"condition": m})
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        out.append(float(info["distance"]))
    return out


def gps_curve(run_dir: Path):
    """(trials, max final distance over conditions, mean) per GPS iteration of a run dir."""
    rows = [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
            if l.strip()]
    return ([r["trials"] for r in rows], [max(r["final_distance"]) for r in rows],
            [float(np.mean(r["final_distance"])) for r in rows])


def trials_to(trials, dist, threshold):
    return next((t for t, d in zip(trials, dist) if d < threshold), None)


def plot(curve_csv: Path, out_png: Path, gps_run, threshold: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(curve_csv) as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["episodes"]) for r in rows]
    mx = [100 * float(r["max_distance"]) for r in rows]
    mean = [100 * float(r["mean_distance"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(ep, mx, "-", color="C1", label="SAC, worst condition")
    ax.plot(ep, mean, ":", color="C1", alpha=0.7, label="SAC, mean over conditions")
    if gps_run:
        gt, gmax, gmean = gps_curve(Path(gps_run))
        ax.plot(gt, 100 * np.array(gmax), "o-", color="C0", ms=4, label="GPS (LQR-FLM), worst condition")
        ax.plot(gt, 100 * np.array(gmean), "o:", color="C0", ms=3, alpha=0.7,
                label="GPS, mean over conditions")
    ax.axhline(100 * threshold, color="k", ls="--", lw=1, label=f"{100 * threshold:g} cm")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training trials (episodes of T steps)")
    ax.set_ylabel("final EE distance (cm)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="GPS experiment YAML")
    ap.add_argument("--episodes", type=int, default=600, help="training episode budget")
    ap.add_argument("--max-minutes", type=float, default=35.0, help="wall-time budget")
    ap.add_argument("--eval-every", type=int, default=10, help="training episodes between evaluations")
    ap.add_argument("--threshold", type=float, default=0.02, help="success distance (m)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learning-starts", type=int, default=10,
                    help="episodes of uniform random actions before learning")
    ap.add_argument("--gamma", type=float, default=0.98)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--gps-run", type=Path, help="a GPS run dir whose metrics.jsonl is plotted too")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "baseline_sac")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from OUT")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    curve_csv = args.out / "sac_curve.csv"
    png = args.out / "sac_vs_gps.png"
    if args.plot_only:
        res = json.loads((args.out / "sac_result.json").read_text())
        plot(curve_csv, png, args.gps_run, args.threshold, res["title"])
        print(f"plot: {png}")
        return 0

    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    import gps_ros.sim  # noqa: F401  (registers the env)
    from gps_ros.config import load_config

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    M, T = len(cfg.agent.conditions), cfg.agent.T
    env = gym.make("GpsRos/PandaReach-v0", config=cfg)
    eval_env = gym.make("GpsRos/PandaReach-v0", config=cfg)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)

    model = SAC("MlpPolicy", env, seed=args.seed, gamma=args.gamma, verbose=0,
                learning_starts=args.learning_starts * T, buffer_size=max(100_000, args.episodes * T),
                device="cpu")
    rows = []
    t_start = time.perf_counter()
    state = {"episodes": 0, "stop": None}

    def do_eval():
        d = evaluate(model, eval_env, M)
        row = {"episodes": state["episodes"], "timesteps": state["episodes"] * T,
               "eval_episodes": (len(rows) + 1) * M,
               "wall_s": round(time.perf_counter() - t_start, 1),
               "max_distance": max(d), "mean_distance": float(np.mean(d)),
               **{f"distance_c{m}": d[m] for m in range(M)}}
        rows.append(row)
        print(f"episodes {row['episodes']:5d}  wall {row['wall_s']:7.0f} s  final dist cm "
              f"[{' '.join(f'{100 * x:5.1f}' for x in d)}]  max {100 * max(d):5.1f}", flush=True)
        with open(curve_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        if max(d) < args.threshold:
            state["stop"] = "reached"

    class EpisodeCallback(BaseCallback):
        def _on_step(self) -> bool:
            for done in self.locals["dones"]:
                if done:
                    state["episodes"] += 1
                    if state["episodes"] % args.eval_every == 0:
                        do_eval()
            if state["stop"] is None and (time.perf_counter() - t_start) > 60 * args.max_minutes:
                state["stop"] = "wall-time budget"
            if state["stop"] is None and state["episodes"] >= args.episodes:
                state["stop"] = "episode budget"
            return state["stop"] is None

    model.learn(total_timesteps=args.episodes * T + 1, callback=EpisodeCallback())
    if not rows or rows[-1]["episodes"] != state["episodes"]:
        do_eval()
    wall = time.perf_counter() - t_start
    best = min(rows, key=lambda r: r["max_distance"])
    reached = trials_to([r["episodes"] for r in rows], [r["max_distance"] for r in rows],
                        args.threshold)
    result = {
        "algorithm": "SAC (stable-baselines3 defaults: MLP 256x256, lr 3e-4, batch 256, "
                     f"tau 0.005, auto entropy; gamma {args.gamma}, learning_starts "
                     f"{args.learning_starts} episodes)",
        "config": str(args.config), "seed": args.seed, "conditions": M, "T": T,
        "episode_budget": args.episodes, "max_minutes": args.max_minutes,
        "episodes_run": state["episodes"], "stopped_by": state["stop"] or "episode budget",
        "wall_s": round(wall, 1), "threshold_m": args.threshold,
        "episodes_to_threshold": reached,
        "best_max_distance_m": best["max_distance"], "best_at_episodes": best["episodes"],
        "final_distances_m": [rows[-1][f"distance_c{m}"] for m in range(M)],
        "eval_episodes": rows[-1]["eval_episodes"],
        "torch": torch.__version__, "threads": args.threads,
    }
    if args.gps_run:
        gt, gmax, _ = gps_curve(args.gps_run)
        g = trials_to(gt, gmax, args.threshold)
        result["gps_run"] = str(args.gps_run)
        result["gps_trials_to_threshold"] = g
        if g:
            if reached:
                result["ratio"] = reached / g
            else:
                result["ratio_lower_bound"] = state["episodes"] / g
    reach_txt = (f"reached {100 * args.threshold:g} cm after {reached} episodes" if reached else
                 f"best worst-condition {100 * best['max_distance']:.1f} cm in {state['episodes']} episodes")
    result["title"] = f"Panda reach, {M} conditions, T={T}: SAC {reach_txt}"
    (args.out / "sac_result.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(curve_csv, png, args.gps_run, args.threshold, result["title"])
    print(json.dumps(result, indent=1))
    print(f"curve: {curve_csv}\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
