"""PyBullet simulation of the configured robot (:class:`gps_ros.sim.arm.ArmSim`; the Franka
Panda reaching under torque control when the config names no robot).

Importing this package registers the Gymnasium environment ``"GpsRos/Reach-v0"`` (and its former
name ``"GpsRos/PandaReach-v0"``; :class:`gps_ros.sim.gym_env.ReachEnv`); pass ``config=`` an
``AgentConfig``, an ``ExperimentConfig`` or a YAML path to ``gymnasium.make``.
"""
from __future__ import annotations

from gps_ros.sim.arm import ArmSim
from gps_ros.task import StateLayout

ENV_ID = "GpsRos/Reach-v0"
ENV_IDS = (ENV_ID, "GpsRos/PandaReach-v0")


def _register() -> None:
    import gymnasium

    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="gps_ros.sim.gym_env:ReachEnv")


_register()


def __getattr__(name: str):
    if name == "ReachEnv":
        from gps_ros.sim.gym_env import ReachEnv

        return ReachEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ArmSim", "StateLayout", "ReachEnv", "ENV_ID"]
