"""PyBullet simulation of the configured robot (:class:`gps_ros.sim.arm.ArmSim`; the Franka
Panda reaching under torque control when the config names no robot).

Importing this package registers the Gymnasium environment ``"GpsRos/Reach-v0"`` (and its former
name ``"GpsRos/PandaReach-v0"``; :class:`gps_ros.sim.gym_env.ReachEnv`) and its goal-conditioned
form ``"GpsRos/GoalReach-v0"`` (:class:`gps_ros.sim.goal_env.GoalReachEnv`, for HER); pass
``config=`` an ``AgentConfig``, an ``ExperimentConfig`` or a YAML path to ``gymnasium.make``.
"""
from __future__ import annotations

from gps_ros.sim.arm import ArmSim
from gps_ros.task import StateLayout

ENV_ID = "GpsRos/Reach-v0"
ENV_IDS = (ENV_ID, "GpsRos/PandaReach-v0")
#: the goal-conditioned reach (GoalEnv API, for HER): :class:`gps_ros.sim.goal_env.GoalReachEnv`
GOAL_ENV_ID = "GpsRos/GoalReach-v0"


def _register() -> None:
    import gymnasium

    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="gps_ros.sim.gym_env:ReachEnv")
    if GOAL_ENV_ID not in gymnasium.registry:
        gymnasium.register(id=GOAL_ENV_ID, entry_point="gps_ros.sim.goal_env:GoalReachEnv")


_register()


def __getattr__(name: str):
    if name == "ReachEnv":
        from gps_ros.sim.gym_env import ReachEnv

        return ReachEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ArmSim", "StateLayout", "ReachEnv", "ENV_ID", "GOAL_ENV_ID"]
