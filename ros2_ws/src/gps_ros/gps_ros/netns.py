"""Network namespaces standing in for several hosts on one machine (tests and benchmarks of the
multi-host graph; needs root and iproute2).  :class:`Hosts` makes one namespace per host on a
bridge that lives in a namespace of its own, addresses only inside them, Cyclone DDS bound to each
host's interface with unicast peers (multicast off) -- the set-up of real machines on one switch --
and removes all of it in :meth:`Hosts.close`.  Nothing touches the machine's own namespace.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

SUBNET = "10.213.7"


def ip_cmd(*args, check=True):
    """`ip ARGS` (iproute2), its output captured."""
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def cyclone_xml(iface: str, peers: Sequence[str]) -> str:
    """A Cyclone DDS configuration: ``iface`` only, multicast off, unicast discovery of
    ``peers`` (the addresses of every host of the graph)."""
    peers = "".join(f'<Peer address="{a}"/>' for a in peers)
    return (f'<?xml version="1.0" encoding="UTF-8"?><CycloneDDS xmlns="https://cdds.io/config">'
            f'<Domain Id="any"><General><Interfaces><NetworkInterface name="{iface}" '
            f'multicast="false"/></Interfaces><AllowMulticast>false</AllowMulticast></General>'
            f'<Discovery><ParticipantIndex>auto</ParticipantIndex>'
            f'<MaxAutoParticipantIndex>60</MaxAutoParticipantIndex><Peers>{peers}</Peers>'
            f'</Discovery></Domain></CycloneDDS>')


class Hosts:
    """One namespace ``gps<tag><name>`` per host (address ``SUBNET.<n>``) on a bridge that lives in
    ``gps<tag>br``; :meth:`launch` runs ``ros2 launch gps_ros <file>`` on a host."""

    def __init__(self, root: Path, hosts: Optional[Dict[str, int]] = None):
        hosts = hosts or {"A": 1, "B": 2, "C": 3}
        self.tag = f"{os.getpid() % 10000}"
        self.root = Path(root)
        self.ns = {h: f"gps{self.tag}{h}" for h in hosts}
        self.br_ns = f"gps{self.tag}br"
        self.procs = []
        ip_cmd("netns", "add", self.br_ns)
        ip_cmd("-n", self.br_ns, "link", "add", "br0", "type", "bridge")
        ip_cmd("-n", self.br_ns, "link", "set", "br0", "up")
        for h, n in hosts.items():
            ns = self.ns[h]
            ip_cmd("netns", "add", ns)
            ip_cmd("-n", ns, "link", "set", "lo", "up")
            ip_cmd("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{h}",
                "netns", self.br_ns)
            ip_cmd("-n", self.br_ns, "link", "set", f"p{h}", "master", "br0")
            ip_cmd("-n", self.br_ns, "link", "set", f"p{h}", "up")
            ip_cmd("-n", ns, "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0")
            ip_cmd("-n", ns, "link", "set", "eth0", "up")
        self.xml = root / "cyclonedds.xml"
        self.xml.write_text(cyclone_xml("eth0", [f"{SUBNET}.{n}" for n in hosts.values()]))

    def env(self, own_dds: bool = True) -> dict:
        """The environment of a process on a host: with ``own_dds`` this graph's Cyclone DDS
        configuration (the host's interface, every host a peer) and ``SUBNET``; without, neither
        (as a user who set nothing: the launch files' defaults decide)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("CYCLONEDDS_URI", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
        env.update(OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        if own_dds:
            env.update(CYCLONEDDS_URI=f"file://{self.xml}", ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET")
        return env

    def run(self, host: str, *cmd: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """``cmd`` on ``host`` with this graph's DDS configuration, its output captured."""
        return subprocess.run(["ip", "netns", "exec", self.ns[host], *cmd], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def launch(self, host: str, log: Path, *args: str, file: str = "train.launch.py",
               own_dds: bool = True) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns[host], "ros2", "launch", "gps_ros",
                              file, *args], env=self.env(own_dds), stdout=open(log, "w"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def kill(self, host: str) -> None:
        """The host dies: every process in its namespace is killed at once."""
        for pid in ip_cmd("netns", "pids", self.ns[host], check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass

    def namespaces(self) -> list:
        return [*self.ns.values(), self.br_ns]

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for ns in self.namespaces():
            for pid in ip_cmd("netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            ip_cmd("netns", "del", ns, check=False)
