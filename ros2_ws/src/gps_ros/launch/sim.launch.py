"""One simulated robot (sim_node, the config's) standing in for the robot + its ros2_control
controller.

  ros2 launch gps_ros sim.launch.py [config:=...] [namespace:=] [lockstep:=false] [use_sim_time:=false]
      [controller:=...]   (default: the forward controller of agent.robot.command)
      [sim_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/camera_640x480.yaml]

use_sim_time:=true makes the sim publish /clock (its simulated time) and stamp with it; the other
nodes of the graph then run with use_sim_time:=true.
"""
from launch.actions import LogInfo

from gps_ros.launch_plan import (describe, describe_access, launch_description, sim_plan,
                                 to_launch_nodes)

ARGS = [
    ("namespace", "", "robot namespace"),
    ("lockstep", "false", "step once per command (training) or run at rate_hz"),
    ("use_sim_time", "false", "publish /clock from the simulation and stamp with it"),
    ("controller", "", "the forward command controller it stands in for ('' = config/ros/sim.yaml's)"),
    ("keystore", "", "SROS2 keystore (ros2 run gps_ros create_keystore DIR): every node in its "
     "enclave, ROS_SECURITY_ENABLE=true, Enforce ('' = as the environment says)"),
    ("discovery", "auto", "how far the graph is visible: localhost (this host; Cyclone DDS on "
     "loopback unless CYCLONEDDS_URI is set), subnet (the network), auto (ROS_AUTOMATIC_"
     "DISCOVERY_RANGE if exported, else subnet for role learner / samplers, else localhost)"),
    ("tf", "true", "robot_state_publisher beside the sim: the arm's TF for rviz2 / Foxglove"),
    ("sim_params", "", "extra sim_node parameters, e.g. config/ros/camera_640x480.yaml"),
]


def launch_setup(get, share):
    specs = sim_plan(share, get("config"), **{k: get(k) for k, _, _ in ARGS})
    tf = ("" if any(s.executable == "robot_state_publisher" for s in specs)
          or get("tf") != "true" else "\nno TF: the robot's URDF is not readable in ros2 launch's "
          "Python (install the package its package:// names there, e.g. example-robot-data)")
    return [LogInfo(msg="gps_ros sim:\n" + describe(specs) + tf + "\n" + describe_access(specs)),
            *to_launch_nodes(specs)[0]]


def generate_launch_description():
    return launch_description(ARGS, launch_setup,
                              config=("panda_reach.yaml", "experiment config (task, sim)"))
