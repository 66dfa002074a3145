"""The robot of an agent section (``agent.robot``, ``agent.held_joints``) and the checks of the
section's poses and targets against it.  Duck-typed on the section (this package sits below the
config), so :func:`gps_ros.config.load_config` and :class:`gps_ros.task.TaskModel` share it."""
from __future__ import annotations

from typing import Optional

import numpy as np

from gps_ros.robot.description import RobotDescription, RobotError, load_description
from gps_ros.robot.model import RobotModel

#: ``agent.robot.urdf`` value that takes the URDF from ROS 2 (the robot_description parameter or
#: topic); only the nodes can resolve it
FROM_ROS = "robot_description"


def robot_description(agent, urdf: Optional[str] = None) -> RobotDescription:
    """The checked :class:`RobotDescription` of ``agent.robot`` (``urdf``: URDF text that replaces
    ``agent.robot.urdf``, e.g. a node's robot_description)."""
    r = agent.robot
    spec = urdf or r.urdf
    if spec == FROM_ROS:
        raise RobotError(f"agent.robot.urdf: {FROM_ROS!r} is the URDF of a ROS 2 graph (the "
                         "robot_description parameter or topic); here name a file")
    return load_description(spec, r.ee_link, r.base_link, r.joints, r.command, agent.held_joints)


def check_pose(model: RobotModel, key: str, q) -> np.ndarray:
    """Joint positions ``q`` as an array if they fit the robot (one per controlled joint, finite,
    within the URDF limits), else one :class:`RobotError` line naming ``key``."""
    q = np.asarray(q, dtype=np.float64)
    names = model.names
    if q.shape != (model.n,):
        raise RobotError(f"{key}: needs {model.n} values, one per joint of agent.robot.joints "
                         f"({', '.join(names)}), got {q.size}")
    if not np.isfinite(q).all():
        raise RobotError(f"{key}: must be finite, got {q.tolist()}")
    bad = np.flatnonzero((q < model.lower - 1e-9) | (q > model.upper + 1e-9))
    if bad.size:
        j = int(bad[0])
        raise RobotError(f"{key}: {names[j]} = {q[j]:g} is outside its limits "
                         f"[{model.lower[j]:g}, {model.upper[j]:g}]")
    return q


def check_reach(model: RobotModel, key: str, point) -> None:
    """One :class:`RobotError` line naming ``key`` when ``point`` lies beyond the arm's reach
    (:meth:`RobotModel.reach`, an upper bound: a point within it may still be unreachable)."""
    centre, radius = model.reach()
    d = float(np.linalg.norm(np.asarray(point, dtype=np.float64) - centre))
    if not d <= radius:
        raise RobotError(f"{key}: {np.round(np.asarray(point, float), 4).tolist()} is {d:.3f} m from "
                         f"the arm's first joint at {np.round(centre, 3).tolist()}, beyond its reach "
                         f"({radius:.3f} m)")


def check_agent(agent, urdf: Optional[str] = None) -> RobotModel:
    """The robot model of an agent section after checking the section against it: the URDF and
    its chain, the start poses, and every condition's target within reach."""
    model = RobotModel(robot_description(agent, urdf))
    check_pose(model, "agent.start_joint_positions", agent.start_joint_positions)
    for i, c in enumerate(agent.conditions):
        if c.start_joint_positions is not None:
            check_pose(model, f"agent.conditions[{i}].start_joint_positions", c.start_joint_positions)
        check_reach(model, f"agent.conditions[{i}].target", c.target)
    return model
