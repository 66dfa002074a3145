"""Deploy a trained policy: policy_node (+ a free-running sim_node with use_sim:=true).

  ros2 launch gps_ros deploy.launch.py checkpoint:=runs/x/policy/policy_0010.pt use_sim:=true
  ros2 launch gps_ros deploy.launch.py checkpoint:=... use_sim:=false \
      policy_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/franka_effort.yaml

policy_node starts *disabled* (holding); enable it with
  ros2 service call /policy_node/enable std_srvs/srv/SetBool "{data: true}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("gps_ros")
    use_sim = LaunchConfiguration("use_sim")
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", description="TorchScript export of the policy (.pt)"),
        DeclareLaunchArgument("use_sim", default_value="true"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "panda_reach.yaml"])),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("robot_description", default_value=""),
        DeclareLaunchArgument("policy_params", default_value=PathJoinSubstitution([share, "config", "ros", "policy.yaml"])),
        GroupAction([
            PushRosNamespace(LaunchConfiguration("namespace")),
            Node(package="gps_ros", executable="sim_node", name="sim_node", output="screen",
                 condition=IfCondition(use_sim),
                 parameters=[PathJoinSubstitution([share, "config", "ros", "sim.yaml"]),
                             {"config": LaunchConfiguration("config"), "lockstep": False}]),
            Node(package="gps_ros", executable="policy_node", name="policy_node", output="screen",
                 parameters=[LaunchConfiguration("policy_params"),
                             {"checkpoint": LaunchConfiguration("checkpoint"),
                              "robot_description": LaunchConfiguration("robot_description")}]),
        ]),
    ])
