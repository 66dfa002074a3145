"""Model-free baseline: SAC (stable-baselines3) on the same Panda task (reach or peg) as GPS.

    pip install -e 'ros2_ws/src/gps_ros[baseline]'       # stable-baselines3 (+ torch; CPU is fine)
    python bench/baseline_sac.py --episodes 600 --max-minutes 35 --gps-run /tmp/gps_ref \
        --out runs/baseline_sac
    python bench/baseline_sac.py --config ros2_ws/src/gps_ros/config/panda_peg.yaml \
        --episodes 4000 --max-minutes 60 --out runs/sac_peg        # peg insertion

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

**Peg insertion** (the config has ``agent.peg``): the env's reward is the GPS distance penalty on
all the EE points relative to their full-insertion positions (``gps_ros.sim.gym_env``), and
``--success inserted`` (the default with a peg) stops when every condition's deterministic
rollout is inserted at its last step (tip below ``peg.success_depth`` of the hole depth,
``ArmSim.insertion``); ``--success distance`` keeps the EE-distance test.  The CSV also
holds each condition's insertion depth, and the plot shows insertion depth vs training trials
(with ``--gps-run``, GPS's ``insertion_depth`` per iteration, the mean over that iteration's noisy
trials).  GPS's trials to success from ``metrics.jsonl`` are the trials up to the first iteration
where every condition's fraction of inserted training trials is at least
``--gps-inserted-fraction``; ``--gps-trials N`` overrides that (e.g. with the noiseless-replay
number of ``bench/peg_results.py``).
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


def evaluate(model, env, n_conditions: int):
    """Final EE distance (m) of one deterministic rollout per condition, and for the peg the
    insertion depth (m) and inserted flag at its last step (else ``None``, ``None``)."""
    dist, depth, ok = [], [], []
    for m in range(n_conditions):
        obs, info = env.reset(options={"condition": m})
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        dist.append(float(info["distance"]))
        if "insertion_depth" in info:
            depth.append(float(info["insertion_depth"]))
            ok.append(bool(info["inserted"]))
    return dist, (depth or None), (ok or None)


def _gps_rows(run_dir: Path) -> list:
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
            if l.strip()]


def gps_curve(run_dir: Path):
    """(trials, max final distance over conditions, mean) per GPS iteration of a run dir."""
    rows = _gps_rows(run_dir)
    return ([r["trials"] for r in rows], [max(r["final_distance"]) for r in rows],
            [float(np.mean(r["final_distance"])) for r in rows])


def gps_peg_curve(run_dir: Path):
    """Peg: (trials, min insertion depth over conditions, mean, min inserted fraction) per GPS
    iteration (the metrics' per-condition means over that iteration's noisy trials); iterations
    without the peg metrics are skipped."""
    rows = [r for r in _gps_rows(run_dir) if "insertion_depth" in r]
    return ([r["trials"] for r in rows], [min(r["insertion_depth"]) for r in rows],
            [float(np.mean(r["insertion_depth"])) for r in rows],
            [min(r.get("inserted", [0.0])) for r in rows])


def trials_to(trials, dist, threshold):
    return next((t for t, d in zip(trials, dist) if d < threshold), None)


def _sac_and_gps_lines(ax, ep, worst, mean, sac_label, gps, gps_label) -> None:
    """SAC's worst and mean condition (cm) vs episodes, and GPS's (trials, worst, mean in m)."""
    ax.plot(ep, worst, "-", color="C1", label=sac_label)
    ax.plot(ep, mean, ":", color="C1", alpha=0.7, label="SAC, mean over conditions")
    if gps is not None and len(gps[0]):
        gt, gworst, gmean = gps
        ax.plot(gt, 100 * np.array(gworst), "o-", color="C0", ms=4, label=gps_label)
        ax.plot(gt, 100 * np.array(gmean), "o:", color="C0", ms=3, alpha=0.7,
                label="GPS, mean over conditions")


def plot(curve_csv: Path, out_png: Path, gps_run, threshold: float, title: str,
         peg: dict | None = None) -> None:
    """Final distance vs trials; with ``peg`` ({"hole_depth", "success_depth"} in m) insertion
    depth vs trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(curve_csv) as f:
        rows = list(csv.DictReader(f))
    if peg is not None:
        return plot_peg(rows, out_png, gps_run, title, peg)
    ep = [int(r["episodes"]) for r in rows]
    mx = [100 * float(r["max_distance"]) for r in rows]
    mean = [100 * float(r["mean_distance"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _sac_and_gps_lines(ax, ep, mx, mean, "SAC, worst condition",
                       gps_curve(Path(gps_run)) if gps_run else None, "GPS (LQR-FLM), worst condition")
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


def plot_peg(rows, out_png: Path, gps_run, title: str, peg: dict) -> None:
    import matplotlib.pyplot as plt

    ep = [max(int(r["episodes"]), 1) for r in rows]
    worst = [100 * float(r["min_depth"]) for r in rows]
    mean = [100 * float(r["mean_depth"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _sac_and_gps_lines(ax, ep, worst, mean, "SAC, worst condition (deterministic)",
                       gps_peg_curve(Path(gps_run))[:3] if gps_run else None,
                       "GPS (LQR-FLM), worst condition (noisy trials' mean)")
    ax.axhline(100 * peg["success_depth"], color="k", ls="--", lw=1,
               label=f"inserted ({100 * peg['success_depth']:g} cm)")
    ax.axhline(100 * peg["hole_depth"], color="0.5", ls=":", lw=1, label="hole floor")
    ax.set_xscale("log")
    ax.set_ylim(-0.2, 100 * peg["hole_depth"] * 1.1)
    ax.set_xlabel("training trials (episodes of T steps)")
    ax.set_ylabel("insertion depth at the last step (cm)")
    ax.set_title(title.replace(": SAC", ":\nSAC", 1), fontsize=9)
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
    ap.add_argument("--success", choices=["distance", "inserted"], default=None,
                    help="evaluation success: every condition's final EE distance < --threshold, "
                         "or every condition inserted at the last step (default: inserted when "
                         "the config has agent.peg, else distance)")
    ap.add_argument("--gps-inserted-fraction", type=float, default=0.5,
                    help="peg: GPS succeeds at the first iteration where every condition's "
                         "fraction of inserted training trials is at least this")
    ap.add_argument("--gps-trials", type=int, default=None,
                    help="GPS's trials to success, overriding the one read from --gps-run")
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
        plot(curve_csv, png, args.gps_run, args.threshold, res["title"],
             res.get("peg_plot") if res.get("success") == "inserted" else None)
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
    peg = cfg.agent.peg
    success = args.success or ("inserted" if peg is not None else "distance")
    if success == "inserted" and peg is None:
        ap.error("--success inserted needs a config with agent.peg")
    peg_plot = None if peg is None else {
        "hole_depth": float(peg.hole_depth),
        "success_depth": float(peg.success_depth) * float(peg.hole_depth)}
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
        d, depth, ok = evaluate(model, eval_env, M)
        row = {"episodes": state["episodes"], "timesteps": state["episodes"] * T,
               "eval_episodes": (len(rows) + 1) * M,
               "wall_s": round(time.perf_counter() - t_start, 1),
               "max_distance": max(d), "mean_distance": float(np.mean(d)),
               **{f"distance_c{m}": d[m] for m in range(M)}}
        msg = ""
        if depth is not None:
            row.update({"min_depth": min(depth), "mean_depth": float(np.mean(depth)),
                        "n_inserted": int(sum(ok)),
                        **{f"depth_c{m}": depth[m] for m in range(M)},
                        **{f"inserted_c{m}": int(ok[m]) for m in range(M)}})
            msg = (f"  depth cm [{' '.join(f'{100 * x:4.1f}' for x in depth)}]  "
                   f"inserted {sum(ok)}/{M}")
        rows.append(row)
        print(f"episodes {row['episodes']:5d}  wall {row['wall_s']:7.0f} s  final dist cm "
              f"[{' '.join(f'{100 * x:5.1f}' for x in d)}]  max {100 * max(d):5.1f}{msg}", flush=True)
        with open(curve_csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        if (all(ok) if success == "inserted" else max(d) < args.threshold):
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
    if success == "inserted":
        reached = next((r["episodes"] for r in rows if r["n_inserted"] == M), None)
    else:
        reached = trials_to([r["episodes"] for r in rows], [r["max_distance"] for r in rows],
                            args.threshold)
    result = {
        "algorithm": "SAC (stable-baselines3 defaults: MLP 256x256, lr 3e-4, batch 256, "
                     f"tau 0.005, auto entropy; gamma {args.gamma}, learning_starts "
                     f"{args.learning_starts} episodes)",
        "config": str(args.config), "seed": args.seed, "conditions": M, "T": T,
        "episode_budget": args.episodes, "max_minutes": args.max_minutes,
        "episodes_run": state["episodes"], "stopped_by": state["stop"] or "episode budget",
        "wall_s": round(wall, 1), "success": success, "threshold_m": args.threshold,
        "episodes_to_threshold" if success == "distance" else "episodes_to_inserted": reached,
        "best_max_distance_m": best["max_distance"], "best_at_episodes": best["episodes"],
        "final_distances_m": [rows[-1][f"distance_c{m}"] for m in range(M)],
        "eval_episodes": rows[-1]["eval_episodes"],
        "torch": torch.__version__, "threads": args.threads,
    }
    if peg is not None:
        bd = [max(r[f"depth_c{m}"] for r in rows) for m in range(M)]
        bw = max(rows, key=lambda r: (r["min_depth"], r["mean_depth"]))
        result.update({
            "hole_depth_m": float(peg.hole_depth), "success_depth_m": peg_plot["success_depth"],
            "best_depth_per_condition_m": bd,
            "best_depth_at_episodes": [max(rows, key=lambda r: r[f"depth_c{m}"])["episodes"]
                                       for m in range(M)],
            "ever_inserted_per_condition": [any(r[f"inserted_c{m}"] for r in rows) for m in range(M)],
            "best_min_depth_m": bw["min_depth"], "best_min_depth_at_episodes": bw["episodes"],
            "max_inserted_at_once": max(r["n_inserted"] for r in rows),
            "final_depths_m": [rows[-1][f"depth_c{m}"] for m in range(M)],
            "peg_plot": peg_plot})
    g = args.gps_trials
    if args.gps_run:
        result["gps_run"] = str(args.gps_run)
        if g is None:
            if success == "inserted":
                gt, _, _, gfrac = gps_peg_curve(args.gps_run)
                g = next((t for t, fr in zip(gt, gfrac)
                          if fr >= args.gps_inserted_fraction - 1e-9), None)
                result["gps_inserted_fraction"] = args.gps_inserted_fraction
            else:
                gt, gmax, _ = gps_curve(args.gps_run)
                g = trials_to(gt, gmax, args.threshold)
    if g is not None or args.gps_run:
        result["gps_trials_to_threshold" if success == "distance" else "gps_trials_to_inserted"] = g
        if g:
            if reached:
                result["ratio"] = reached / g
            else:
                result["ratio_lower_bound"] = state["episodes"] / g
    if success == "inserted":
        reach_txt = (f"inserted on all after {reached} episodes" if reached else
                     f"not inserted on all in {state['episodes']} episodes (best depth cm "
                     f"{', '.join(f'{100 * x:.1f}' for x in result['best_depth_per_condition_m'])})")
    else:
        reach_txt = (f"reached {100 * args.threshold:g} cm after {reached} episodes" if reached else
                     f"best worst-condition {100 * best['max_distance']:.1f} cm in {state['episodes']} episodes")
    task = "Panda peg insertion" if peg is not None else "Panda reach"
    result["title"] = f"{task}, {M} conditions, T={T}: SAC {reach_txt}"
    (args.out / "sac_result.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(curve_csv, png, args.gps_run, args.threshold, result["title"],
         peg_plot if success == "inserted" else None)
    print(json.dumps(result, indent=1))
    print(f"curve: {curve_csv}\nplot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
