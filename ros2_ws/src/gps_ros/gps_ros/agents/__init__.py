"""Agents: run trials of a policy on a robot (simulated or real) and return Trajectories.

Imports are lazy so that e.g. a ROS agent module does not pull in PyBullet.
"""
from __future__ import annotations

__all__ = ["SimAgent", "MAX_JOINT_VELOCITY"]


def __getattr__(name: str):
    if name in __all__:
        from gps_ros.agents import sim

        return getattr(sim, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
