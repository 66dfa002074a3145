"""One simulated Panda (sim_node) standing in for the robot + its ros2_control controller.

  ros2 launch gps_ros sim.launch.py [config:=...] [namespace:=] [lockstep:=false] [use_sim_time:=false]
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("gps_ros")
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "panda_reach.yaml"]),
                              description="experiment config (task, sim)"),
        DeclareLaunchArgument("namespace", default_value="", description="robot namespace"),
        DeclareLaunchArgument("lockstep", default_value="false",
                              description="step once per command (training) or run at rate_hz"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="publish and use /clock from the simulation"),
        GroupAction([
            PushRosNamespace(LaunchConfiguration("namespace")),
            Node(package="gps_ros", executable="sim_node", name="sim_node", output="screen",
                 parameters=[PathJoinSubstitution([share, "config", "ros", "sim.yaml"]),
                             {"config": config, "lockstep": LaunchConfiguration("lockstep"),
                              "publish_clock": use_sim_time, "use_sim_time": use_sim_time}]),
        ]),
    ])
