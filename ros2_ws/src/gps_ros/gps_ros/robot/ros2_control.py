"""A robot's URDF driven by ros2_control's mock hardware, and the controllers a GPS run needs.

For rehearsing the hardware route against the real ``controller_manager`` (no robot, no
simulator): :func:`mock_hardware_urdf` adds a ``<ros2_control>`` tag to any arm's URDF with
``mock_components/GenericSystem`` (position and velocity command interfaces per joint,
``calculate_dynamics``: a velocity command is integrated into the position, a position command
is reached in one update), and :func:`controller_params` is the controller_manager's parameter
file: ``joint_state_broadcaster`` and one ``forward_command_controller`` per command interface,
named as :data:`gps_ros.robot.actuation.CONTROLLERS` names them (what the sampler and the policy
publish to).  ``launch/ros2_control_mock.launch.py`` starts them
(:func:`gps_ros.launch_plan.mock_robot_plan`).  No ROS here: tested in CI.

The mock has no dynamics of its own: effort commands cannot be simulated (the sim_node stands in
for an effort arm).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Dict, Sequence

from gps_ros.robot.actuation import CONTROLLERS

#: the command interfaces the mock hardware simulates
MOCK_INTERFACES = ("position", "velocity")
HARDWARE_NAME = "GpsRosMockSystem"
#: the controller of ``reset_mode: trajectory`` (FollowJointTrajectory on position commands)
TRAJECTORY_CONTROLLER = "joint_trajectory_controller"


class Ros2ControlError(ValueError):
    """A robot or interface the mock hardware cannot stand in for (one line)."""


def mock_hardware_urdf(urdf: str, joints: Sequence[str], initial_positions: Sequence[float]) -> str:
    """``urdf`` with its ``<ros2_control>`` tags replaced by one mock system over ``joints``
    (each starting at its ``initial_positions`` value)."""
    if len(joints) != len(initial_positions):
        raise Ros2ControlError(f"{len(joints)} joints but {len(initial_positions)} initial "
                               "positions")
    root = ET.fromstring(urdf)
    names = {j.get("name") for j in root.iter("joint")}
    missing = [j for j in joints if j not in names]
    if missing:
        raise Ros2ControlError(f"joints {missing} are not in the URDF")
    for old in root.findall("ros2_control"):
        root.remove(old)
    rc = ET.SubElement(root, "ros2_control", name=HARDWARE_NAME, type="system")
    hw = ET.SubElement(rc, "hardware")
    ET.SubElement(hw, "plugin").text = "mock_components/GenericSystem"
    ET.SubElement(hw, "param", name="calculate_dynamics").text = "true"
    for name, q0 in zip(joints, initial_positions):
        j = ET.SubElement(rc, "joint", name=name)
        for iface in MOCK_INTERFACES:
            ET.SubElement(j, "command_interface", name=iface)
        pos = ET.SubElement(j, "state_interface", name="position")
        ET.SubElement(pos, "param", name="initial_value").text = repr(float(q0))
        ET.SubElement(j, "state_interface", name="velocity")
    return ET.tostring(root, encoding="unicode")


def controller_params(joints: Sequence[str], update_rate: int = 100) -> Dict[str, dict]:
    """The controller_manager's parameters (a ``--params-file`` as a dict): the joint state
    broadcaster, a forward command controller per simulated command interface and the joint
    trajectory controller of trajectory resets (position commands)."""
    cm = {"update_rate": int(update_rate),
          "joint_state_broadcaster": {"type": "joint_state_broadcaster/JointStateBroadcaster"}}
    out = {"controller_manager": {"ros__parameters": cm}}
    for iface in MOCK_INTERFACES:
        name = CONTROLLERS[iface]
        cm[name] = {"type": "forward_command_controller/ForwardCommandController"}
        out[name] = {"ros__parameters": {"joints": list(joints), "interface_name": iface}}
    cm[TRAJECTORY_CONTROLLER] = {"type": "joint_trajectory_controller/JointTrajectoryController"}
    out[TRAJECTORY_CONTROLLER] = {"ros__parameters": {
        "joints": list(joints), "command_interfaces": ["position"],
        "state_interfaces": ["position", "velocity"]}}
    return out


def controller_for(command: str) -> str:
    """The forward controller of a command interface the mock simulates."""
    if command not in MOCK_INTERFACES:
        raise Ros2ControlError(f"ros2_control's mock hardware simulates {' and '.join(MOCK_INTERFACES)}"
                               f" commands, not {command} (an effort arm: sim.launch.py stands in)")
    return CONTROLLERS[command]


def trajectory_duration(q_now: Sequence[float], q_goal: Sequence[float],
                        max_velocity: Sequence[float], minimum: float = 1.0) -> float:
    """Seconds for a reset trajectory from ``q_now`` to ``q_goal`` whose one point has zero
    velocity and acceleration (the joint trajectory controller then interpolates a quintic from
    rest to rest, whose peak speed is 1.875 x the mean): no joint faster than its
    ``max_velocity``; at least ``minimum``."""
    import numpy as np

    dist = np.abs(np.asarray(q_goal, float) - np.asarray(q_now, float))
    vmax = np.asarray(max_velocity, float)
    return float(max(minimum, 1.875 * float(np.max(dist / vmax)) if dist.size else 0.0))


def controller_problem(controllers: Sequence[tuple], name: str, manager: str) -> str | None:
    """Why the controller ``name`` cannot take the sampler's commands, from the
    ``(name, state)`` pairs of ``manager``'s ``list_controllers``; None when it is active."""
    states = dict(controllers)
    if name not in states:
        loaded = ", ".join(f"{n} ({s})" for n, s in controllers) or "none"
        return (f"controller {name} is not loaded in {manager} (loaded: {loaded}); "
                f"ros2 run controller_manager spawner {name} -c {manager}")
    if states[name] != "active":
        return (f"controller {name} is {states[name]} in {manager}, not active: commands would "
                f"go nowhere; ros2 control switch_controllers --activate {name} -c {manager}")
    return None
