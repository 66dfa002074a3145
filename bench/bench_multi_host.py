"""GPS iteration wall time with the graph split over hosts: network namespaces on one machine
stand in for the hosts (gps_ros.netns: Cyclone DDS on each host's interface, unicast peers), each
running its share with ``train.launch.py role:=...`` in lockstep simulation (a sim_node next to
each sampler, one message pair per control step, the protocol of a real robot).

    sudo -E python bench/bench_multi_host.py [--iterations 3] [--config .../panda_reach.yaml]

Needs root, iproute2 and a sourced ROS 2 + workspace.  Prints, per layout, the sampling stage and
the whole iteration (means over the iterations after the first, from metrics.jsonl).  All hosts
share this machine's cores: it measures the graph's overhead and how sampling spreads over
samplers, not the speed of separate machines.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gps_ros.netns import Hosts

PKG = Path(__file__).resolve().parents[1] / "ros2_ws/src/gps_ros"

LAYOUTS = {
    "1 host, 2 samplers": ({"A": 1}, 2, {"A": ("all", "")}),
    "1 host, 4 samplers": ({"A": 1}, 4, {"A": ("all", "")}),
    "3 hosts (learner + 2 sampler hosts), 2 samplers": (
        {"A": 1, "B": 2, "C": 3}, 2, {"A": ("learner", ""), "B": ("samplers", "0"),
                                      "C": ("samplers", "1")}),
    "3 hosts (learner + 2 sampler hosts), 4 samplers": (
        {"A": 1, "B": 2, "C": 3}, 4, {"A": ("learner", ""), "B": ("samplers", "0-1"),
                                      "C": ("samplers", "2-3")}),
}


def run_layout(name, hosts_map, n, roles, config, iterations, root):
    d = Path(tempfile.mkdtemp(prefix="layout_", dir=root))
    hosts = Hosts(d, hosts_map)
    run = d / "run"
    t0 = time.monotonic()
    try:
        learner = None
        for h, (role, idx) in sorted(roles.items(), key=lambda kv: kv[1][0] == "learner"):
            args = [f"config:={config}", f"num_samplers:={n}", "sim_mode:=lockstep",
                    f"role:={role}", f"iterations:={iterations}", "sampler_wait:=120"]
            args.append(f"experiment_dir:={run}" if role != "samplers" else
                        f"experiment_dir:={d / ('host' + h)}")
            if idx:
                args.append(f"sampler_indices:={idx}")
            p = hosts.launch(h, d / f"{h}.log", *args)
            if role != "samplers":
                learner = p
        rc = learner.wait(1800)
        wall = time.monotonic() - t0
    finally:
        hosts.close()
    if rc != 0:
        raise SystemExit(f"{name}: the learner failed (logs in {d})")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    later = rows[1:] or rows
    mean = lambda k: sum(r["time"][k] for r in later) / len(later)  # noqa: E731
    return mean("sample"), mean("total"), wall, rows[-1]["trials"], sum(r["discarded"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(PKG / "config/panda_reach.yaml"))
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--only", help="run only the layouts whose name contains this")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_multi_host_"))
    print(f"{Path(a.config).name}, {a.iterations} iterations; sampling / iteration: means over "
          f"iterations 2-{a.iterations}")
    print(f"{'layout':<52} {'sampling s':>10} {'iteration s':>12} {'wall s':>8}")
    for name, (hmap, n, roles) in LAYOUTS.items():
        if a.only and a.only not in name:
            continue
        s, t, wall, trials, bad = run_layout(name, hmap, n, roles, a.config, a.iterations, root)
        print(f"{name:<52} {s:>10.2f} {t:>12.2f} {wall:>8.1f}   ({trials} trials run, {bad} "
              "discarded and re-run)")


if __name__ == "__main__":
    main()
