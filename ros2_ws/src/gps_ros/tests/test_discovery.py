"""Defaults that don't leak, for real: two network namespaces on a bridge stand in for this host
(A) and another machine on the lab network (B) that runs ROS 2 with every host as a unicast peer.
``sim.launch.py`` on A as a user who set nothing (no CYCLONEDDS_URI, no discovery range) is
invisible from B; the same launch with ``discovery:=subnet`` is seen (so B would see a leak).

Needs root (``ip netns``) and a sourced ROS 2 with the workspace; skips otherwise.  The
namespaces and the bridge are removed afterwards.
"""
from __future__ import annotations

import os
import shutil

import pytest

from launch_helpers import require_ros, temp_dir, wait_for_text

from gps_ros.netns import Hosts, ip_cmd

require_ros(cli=True)
if os.geteuid() != 0 or shutil.which("ip") is None:
    pytest.skip("network namespaces need root and iproute2 (ip netns)", allow_module_level=True)


@pytest.mark.parametrize("discovery, seen", [("auto", False), ("subnet", True)])
def test_a_one_host_launch_is_seen_from_other_hosts_only_when_asked(discovery, seen):
    tmp = temp_dir(f"discovery_{discovery}")
    hosts = Hosts(tmp, {"A": 1, "B": 2})
    try:
        log = tmp / "sim.log"
        hosts.launch("A", log, f"discovery:={discovery}", file="sim.launch.py", own_dds=False)
        assert wait_for_text(log, "commands on", 90), log.read_text()
        want = "LOCALHOST, Cyclone DDS on loopback only" if discovery == "auto" else "SUBNET"
        assert want in log.read_text()
        topics = hosts.run("B", "ros2", "topic", "list", "--no-daemon", "--spin-time", "5").stdout
        assert ("/joint_states" in topics) == seen, topics
    finally:
        hosts.close()
    assert not any(ns in ip_cmd("netns", "list").stdout for ns in hosts.namespaces())
