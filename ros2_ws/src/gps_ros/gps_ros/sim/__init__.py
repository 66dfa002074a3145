"""PyBullet simulation of the default robot (Franka Panda reaching under torque control).

Importing this package registers the Gymnasium environment ``"GpsRos/PandaReach-v0"``
(:class:`gps_ros.sim.gym_env.PandaReachEnv`); pass ``config=`` an ``AgentConfig``,
an ``ExperimentConfig`` or a YAML path to ``gymnasium.make``.
"""
from __future__ import annotations

from gps_ros.sim.panda import ARM_JOINTS, EE_LINK, PandaReachSim, StateLayout

ENV_ID = "GpsRos/PandaReach-v0"


def _register() -> None:
    import gymnasium

    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="gps_ros.sim.gym_env:PandaReachEnv")


_register()


def __getattr__(name: str):
    if name == "PandaReachEnv":
        from gps_ros.sim.gym_env import PandaReachEnv

        return PandaReachEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PandaReachSim", "StateLayout", "PandaReachEnv", "ENV_ID", "ARM_JOINTS", "EE_LINK"]
