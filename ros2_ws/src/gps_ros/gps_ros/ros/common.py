"""Shared, rclpy-free helpers of the nodes: config lookup, safety filter from parameters, and a
main() wrapper that imports rclpy lazily."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from gps_ros.safety import PANDA_ARM_JOINTS, SafetyFilter, SafetyLimits

DEFAULT_JOINTS = list(PANDA_ARM_JOINTS)


def default_config_path() -> str:
    """The package's example task config (installed share/, else the source tree)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        p = Path(get_package_share_directory("gps_ros")) / "config" / "panda_reach.yaml"
        if p.exists():
            return str(p)
    except Exception:  # noqa: BLE001 - not on a ROS machine / not installed
        pass
    return str(Path(__file__).resolve().parents[2] / "config" / "panda_reach.yaml")


def load_experiment_config(path: str):
    from gps_ros.config import load_config

    return load_config(path or default_config_path())


def safety_from_params(robot_description: str, joints: Sequence[str], mode: str, rate_hz: float,
                       stale_periods: float, position_margin: float, hold_damping: float,
                       brake_gain: float, effort_scale: float, velocity_scale: float) -> SafetyFilter:
    """The SafetyFilter a node configures from its parameters; limits from ``robot_description``
    (URDF text, or a path to a .urdf file), else from the simulated Panda's URDF."""
    if robot_description:
        if robot_description.lstrip().startswith("<"):
            limits = SafetyLimits.from_urdf_string(robot_description, joints)
        else:
            limits = SafetyLimits.from_urdf_file(os.path.expanduser(robot_description), joints)
    else:
        limits = SafetyLimits.panda_sim(joints)
    return SafetyFilter(limits, mode=mode, control_period=1.0 / rate_hz,
                        stale_periods=stale_periods, position_margin=position_margin,
                        hold_damping=hold_damping, brake_gain=brake_gain,
                        effort_scale=effort_scale, velocity_scale=velocity_scale)


SAFETY_PARAMS = {
    "robot_description": "",      # URDF text or file; "" = pybullet_data franka_panda/panda.urdf
    "command_mode": "effort",     # effort | velocity
    "stale_periods": 3.0,
    "position_margin": 0.05,
    "hold_damping": 0.0,
    "brake_gain": 0.0,
    "effort_scale": 1.0,
    "velocity_scale": 1.0,
}


def spin_node(make_node: Callable, args=None, threads: Optional[int] = None) -> None:
    """rclpy.init, build the node, spin it on a MultiThreadedExecutor until Ctrl-C / shutdown."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
