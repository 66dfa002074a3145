"""Soak: a long training over ROS 2, memory and open file descriptors of every node per iteration.

  source install/setup.bash   # a ROS 2 Jazzy with the colcon-built workspace
  python bench/soak_ros.py [--iterations 200] [--sim-mode lockstep] [--out /tmp/soak]

Runs ``ros2 launch gps_ros train.launch.py`` on a small task (the Panda reach of
config/panda_reach.yaml with one condition, T = 20, 2 trials per iteration, the GMM prior capped
at 4 trials), and each time the coordinator writes an iteration's metrics it reads, for every
process of the launch, the resident memory (VmRSS) and the number of open file descriptors from
/proc.  Prints per node: RSS at iteration 10 (after warm-up), at N/2 and at the end, the growth
per 100 iterations over the second half (least-squares slope over iterations N/2..N: what is
still growing once every cache and the action servers' retention of finished goals, 60 s, are
full), the fd count's range; the experiment directory's size; writes soak.csv, soak.json and
soak.png into --out.  A leak shows as a second-half slope that does not go to zero as N grows,
or an fd count that climbs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
NODES = ("sim_node", "sampler_node", "dynamics_node", "trajopt_node", "coordinator_node")


def task_config(path: Path, iterations: int) -> str:
    d = yaml.safe_load((ROOT / "ros2_ws/src/gps_ros/config/panda_reach.yaml").read_text())
    d["name"] = "soak"
    d["iterations"] = iterations
    d["agent"]["T"] = 20
    d["agent"]["conditions"] = d["agent"]["conditions"][:1]
    d["algorithm"]["samples_per_condition"] = 2
    d["dynamics"]["prior"]["max_samples"] = 4
    path.write_text(yaml.safe_dump(d))
    return str(path)


def children(root: int) -> dict:
    """{pid: node name} of the launch's processes (ros2 launch itself: "launch")."""
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text()
                parent[int(p)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = {root: "launch"}, [root]
    while todo:
        pid = todo.pop()
        for c, pp in parent.items():
            if pp == pid and c not in out:
                try:
                    cmd = Path(f"/proc/{c}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                name = next((n for n in NODES if any(a.decode(errors="replace").endswith(f"/{n}")
                                                      or a == f"__node:={n}".encode()
                                                      for a in cmd)), None)
                out[c] = name or "other"
                todo.append(c)
    return out


def sample(pid: int):
    """(RSS MiB, open fds) of a process, or None once it is gone."""
    try:
        rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        return rss / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--sim-mode", default="lockstep", choices=("lockstep", "embedded"))
    ap.add_argument("--out", default="/tmp/gps_ros_soak")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp = out / "exp"
    cfg = task_config(out / "soak.yaml", args.iterations)
    log = open(out / "launch.log", "w")
    t0 = time.monotonic()
    launch = subprocess.Popen(["ros2", "launch", "gps_ros", "train.launch.py", f"config:={cfg}",
                               f"experiment_dir:={exp}", f"sim_mode:={args.sim_mode}"],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    rows, seen, procs = [], 0, {}
    metrics = exp / "metrics.jsonl"
    try:
        while launch.poll() is None:
            time.sleep(0.2)
            n = sum(1 for _ in open(metrics)) if metrics.exists() else 0
            if n <= seen:
                continue
            seen = n
            procs.update(children(launch.pid))
            for pid, name in sorted(procs.items()):
                s = sample(pid)
                if s is not None and name in NODES:
                    rows.append({"iteration": n, "node": name, "pid": pid, "rss_mib": s[0],
                                 "fds": s[1], "t": time.monotonic() - t0})
            if n % 20 == 0:
                print(f"iteration {n}/{args.iterations}: "
                      + ", ".join(f"{r['node']} {r['rss_mib']:.0f} MiB {r['fds']} fds"
                                  for r in rows if r["iteration"] == n), flush=True)
    except KeyboardInterrupt:
        os.killpg(launch.pid, signal.SIGINT)
        launch.wait()
    wall = time.monotonic() - t0
    if not rows:
        print(f"no iteration finished; see {out / 'launch.log'}", file=sys.stderr)
        return 1
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    last = max(r["iteration"] for r in rows)
    print(f"\nsoak: {last} iterations over ROS 2 ({args.sim_mode}) in {wall:.0f} s, launch exit "
          f"code {launch.returncode}")
    print(f"{'node':<18}{'RSS@10 MiB':>11}{'RSS@N/2':>9}{'RSS@end':>9}{'MiB/100 it (2nd half)':>23}"
          f"{'fds min..max':>14}")
    summary = {}
    for name in NODES:
        rs = [r for r in rows if r["node"] == name]
        if not rs:
            continue
        it = np.array([r["iteration"] for r in rs], float)
        rss = np.array([r["rss_mib"] for r in rs])
        fds = [r["fds"] for r in rs]
        warm = it >= min(10, it.max())
        late = it >= it.max() / 2
        slope = np.polyfit(it[late], rss[late], 1)[0] * 100 if late.sum() > 2 else float("nan")
        summary[name] = {"rss_at_10": float(rss[warm][0]), "rss_at_half": float(rss[late][0]),
                         "rss_end": float(rss[-1]), "mib_per_100_iterations_2nd_half": float(slope),
                         "fds": [min(fds), max(fds)]}
        print(f"{name:<18}{rss[warm][0]:>11.1f}{rss[late][0]:>9.1f}{rss[-1]:>9.1f}{slope:>23.2f}"
              f"{f'{min(fds)}..{max(fds)}':>14}")
    size = sum(p.stat().st_size for p in exp.rglob("*") if p.is_file()) / 2**20
    print(f"experiment directory: {size:.1f} MiB ({size / last * 1024:.0f} KiB per iteration)")
    (out / "soak.json").write_text(json.dumps({"iterations": last, "wall_s": wall,
                                               "exp_mib": size, "nodes": summary}, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for name in summary:
            rs = [r for r in rows if r["node"] == name]
            ax[0].plot([r["iteration"] for r in rs], [r["rss_mib"] for r in rs], label=name)
            ax[1].plot([r["iteration"] for r in rs], [r["fds"] for r in rs], label=name)
        ax[0].set(xlabel="iteration", ylabel="RSS (MiB)")
        ax[1].set(xlabel="iteration", ylabel="open file descriptors")
        ax[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=90)
    except ImportError:
        pass
    print(f"csv, json and plot in {out}")
    return 0 if launch.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
