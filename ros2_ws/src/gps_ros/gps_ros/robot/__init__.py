"""The robot: its description (a URDF and the chain the task controls) and its rigid-body model.

Nothing here knows any particular robot: a robot is configuration (``agent.robot``), and
:func:`load_robot` builds the one :class:`RobotModel` that the cost, the initial controllers, the
dynamics prior, the safety limits, ``targets record``, the sampler and the simulator share.
"""
from gps_ros.robot.description import (COMMAND_MODES, RobotDescription, RobotError,
                                       load_description, package_share, parse_description,
                                       resolve_urdf)
from gps_ros.robot.model import RobotModel

__all__ = ["COMMAND_MODES", "RobotDescription", "RobotError", "RobotModel", "load_description",
           "package_share", "parse_description", "resolve_urdf"]
