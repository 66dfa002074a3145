"""The config's robot on ros2_control's mock hardware: robot_state_publisher (its URDF with a
``<ros2_control>`` tag of mock_components/GenericSystem), the controller_manager and the spawners
of joint_state_broadcaster and the forward command controllers.  Rehearse the hardware route
against the real controller_manager (position or velocity arms; an effort arm: sim.launch.py):

  ros2 launch gps_ros ros2_control_mock.launch.py config:=$PWD/my_task.yaml
  ros2 launch gps_ros train.launch.py use_sim:=false config:=$PWD/my_task.yaml \\
      controller_manager:=/controller_manager \\
      sampler_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/ros2_control.yaml

What runs is decided in gps_ros.launch_plan.mock_robot_plan (tested without ROS).
"""
import tempfile

from launch.actions import LogInfo

from gps_ros.launch_plan import (describe, describe_access, launch_description, mock_robot_plan,
                                 to_launch_nodes)

ARGS = [
    ("namespace", "", "robot namespace"),
    ("update_rate", "100", "controller_manager update rate (Hz)"),
    ("inactive", "false", "true: the config's forward controller is configured, not activated"),
    ("discovery", "auto", "how far the graph is visible: localhost, subnet or auto (see "
     "train.launch.py)"),
]


def launch_setup(get, share):
    out = tempfile.mkdtemp(prefix="gps_ros_ros2_control_")
    specs = mock_robot_plan(share, get("config"), out, **{k: get(k) for k, _, _ in ARGS})
    return [LogInfo(msg="gps_ros ros2_control mock robot (URDF and controllers in " + out
                        + "):\n" + describe(specs) + "\n" + describe_access(specs)),
            *to_launch_nodes(specs)[0]]


def generate_launch_description():
    return launch_description(ARGS, launch_setup, config=(
        "so101_reach.yaml", "experiment config (its robot and start pose)"))
