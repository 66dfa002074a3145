"""Several hosts, for real: three network namespaces on a bridge of their own stand in for three
machines (the learner on A, one sampler + its sim on each of B and C), each with Cyclone DDS bound
to its own interface and unicast peers (multicast off), started with the launch files of one
host's share (``train.launch.py role:=learner`` / ``role:=samplers``).

* the metrics equal those of the single-host (in-process) run;
* host C is killed mid-iteration: its trials are re-run on B, the run completes with the same
  metrics, nothing discarded, and it resumes (to more iterations) from the learner host alone.

Needs root (``ip netns``) and a sourced ROS 2 with the workspace; skips otherwise.  Everything it
creates -- the namespaces, the bridge (inside a namespace of its own), the addresses -- is removed
afterwards; nothing touches the machine's own network namespace.
"""
from __future__ import annotations

import os
import shutil
import time

import pytest

from launch_helpers import (in_process_metrics, reach_config, read_metrics, require_ros, temp_dir,
                            wait_for_text)

from gps_ros.netns import Hosts, ip_cmd

require_ros(cli=True)
if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("network namespaces need root and iproute2 (ip netns)", allow_module_level=True)

@pytest.fixture
def hosts():
    h = Hosts(temp_dir("hosts"))
    try:
        yield h
    finally:
        h.close()
    assert not any(ns in ip_cmd("netns", "list").stdout for ns in h.namespaces())


def _same_metrics(ros, ref):
    assert len(ros) == len(ref)
    for a, b in zip(ros, ref):
        assert a["trials"] == b["trials"] and a["discarded"] == 0
        assert a["cost"] == pytest.approx(b["cost"], abs=1e-6)
        assert a["final_distance"] == pytest.approx(b["final_distance"], abs=1e-8)


COMMON = ("num_samplers:=2", "sim_mode:=lockstep")


def test_learner_and_two_sampler_hosts_train_like_one_host(hosts):
    tmp = hosts.root
    config = reach_config(tmp / "reach.yaml", iterations=2)
    run = tmp / "run"
    b = hosts.launch("B", tmp / "B.log", f"config:={config}", *COMMON, "role:=samplers",
                     "sampler_indices:=0", f"experiment_dir:={tmp / 'hostB'}")
    c = hosts.launch("C", tmp / "C.log", f"config:={config}", *COMMON, "role:=samplers",
                     "sampler_indices:=1", f"experiment_dir:={tmp / 'hostC'}")
    t0 = time.monotonic()
    a = hosts.launch("A", tmp / "A.log", f"config:={config}", *COMMON, "role:=learner",
                     "sampler_wait:=60", f"experiment_dir:={run}")
    assert a.wait(300) == 0, (tmp / "A.log").read_text()[-3000:]
    wall = time.monotonic() - t0
    log = (tmp / "A.log").read_text()
    assert "trials on 2 of 2 samplers" in log
    _same_metrics(read_metrics(run), in_process_metrics(config, tmp / "in_process"))
    # every trial it used is on the learner host, frames and all (none in trials/: the samplers
    # keep their own copies on their hosts)
    assert sorted(p.name for p in (run / "iterations" / "0002").glob("trials_c*.npz")) == [
        "trials_c00.npz", "trials_c01.npz"]
    assert b.poll() is None and c.poll() is None          # the sampler hosts keep serving
    for h in ("B", "C"):                                  # each sim runs on its sampler's host
        text = (tmp / f"{h}.log").read_text()
        assert "lockstep round trip through the sim" in text and "runs on host" not in text
    print(f"3 hosts, 2 iterations: {wall:.1f} s wall incl. start-up")


def test_a_sampler_host_dies_mid_iteration_and_the_run_completes_and_resumes(hosts):
    tmp = hosts.root
    config = reach_config(tmp / "reach.yaml", iterations=3)
    run = tmp / "run"
    hosts.launch("B", tmp / "B.log", f"config:={config}", *COMMON, "role:=samplers",
                 "sampler_indices:=0", f"experiment_dir:={tmp / 'hostB'}")
    hosts.launch("C", tmp / "C.log", f"config:={config}", *COMMON, "role:=samplers",
                 "sampler_indices:=1", f"experiment_dir:={tmp / 'hostC'}")
    a = hosts.launch("A", tmp / "A.log", f"config:={config}", *COMMON, "role:=learner",
                     "sampler_wait:=60", f"experiment_dir:={run}")
    assert wait_for_text(tmp / "A.log", "iteration 1/3", 240), (tmp / "A.log").read_text()[-3000:]
    hosts.kill("C")                                      # host C is gone, mid-iteration 2
    assert a.wait(300) == 0, (tmp / "A.log").read_text()[-3000:]
    log = (tmp / "A.log").read_text()
    assert "sampler /sampler_1/run_trial is gone" in log or "left the graph" in log, log[-3000:]
    ref = in_process_metrics(config, tmp / "in_process")
    _same_metrics(read_metrics(run), ref)
    # resume from the learner host alone, with the sampler left, to one more iteration
    a2 = hosts.launch("A", tmp / "A2.log", f"config:={config}", *COMMON, "role:=learner",
                      "samplers:=/sampler_0", "iterations:=4", f"experiment_dir:={run}")
    assert a2.wait(300) == 0, (tmp / "A2.log").read_text()[-3000:]
    rows = read_metrics(run)
    assert len(rows) == 4 and rows[-1]["discarded"] == 0
    _same_metrics(rows[:3], ref)
