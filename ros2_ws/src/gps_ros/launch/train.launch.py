"""GPS training over ROS 2: N namespaced (sim_node +) sampler_node pairs, dynamics_node, trajopt_node,
trainer_node (MDGPS) and the coordinator_node running the GPS loop over them.

  ros2 launch gps_ros train.launch.py use_sim:=true num_samplers:=2 config:=/path/task.yaml
  ros2 launch gps_ros train.launch.py use_sim:=false robot_description:=/path/robot.urdf \
      sampler_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/franka_effort.yaml

With use_sim:=false the samplers talk to the robot's own ros2_control controllers (one robot:
num_samplers:=1, namespace:= the robot's namespace, usually empty).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def _bool(context, name):
    return LaunchConfiguration(name).perform(context).strip().lower() in ("1", "true", "yes", "on")


def launch_setup(context, *args, **kwargs):
    share = FindPackageShare("gps_ros").perform(context)
    config = LaunchConfiguration("config").perform(context)
    use_sim = _bool(context, "use_sim")
    n = int(LaunchConfiguration("num_samplers").perform(context))
    if n < 1:
        raise ValueError(f"num_samplers must be >= 1, got {n}")
    prefix = LaunchConfiguration("namespace").perform(context).strip("/")
    exp_dir = LaunchConfiguration("experiment_dir").perform(context)
    urdf = LaunchConfiguration("robot_description").perform(context)
    sampler_params = LaunchConfiguration("sampler_params").perform(context) or \
        f"{share}/config/ros/sampler.yaml"
    sim_time = {"use_sim_time": use_sim}
    common = {"config": config, **sim_time}
    controller = LaunchConfiguration("controller").perform(context)
    robot_ns = f"/{prefix}" if prefix else ""
    actions = []
    for i in range(n):
        group = [PushRosNamespace(f"{prefix}/sampler_{i}" if prefix else f"sampler_{i}")]
        params = {**common, "experiment_dir": exp_dir, "robot_description": urdf}
        remaps = []
        if use_sim:
            group.append(Node(package="gps_ros", executable="sim_node", name="sim_node", output="screen",
                              parameters=[f"{share}/config/ros/sim.yaml",
                                          {**common, "lockstep": True, "publish_clock": False}]))
            params.update(lockstep=True, state_source="gps_state", reset_service="reset")
        else:
            # a real robot: the sampler lives in sampler_i but reads / commands the robot's topics
            if controller:
                params["controller"] = controller
                remaps.append((f"{controller}/commands", f"{robot_ns}/{controller}/commands"))
            remaps += [("joint_states", f"{robot_ns}/joint_states"),
                       ("camera/image_raw", f"{robot_ns}/camera/image_raw"),
                       ("e_stop", f"{robot_ns}/e_stop")]
        group.append(Node(package="gps_ros", executable="sampler_node", name="sampler_node",
                          output="screen", parameters=[sampler_params, params], remappings=remaps))
        actions.append(GroupAction(group))
    # the coordinator finds sampler i at /<prefix>/sampler_i/run_trial
    actions += [
        Node(package="gps_ros", executable="dynamics_node", name="dynamics_node", output="screen",
             parameters=[common]),
        Node(package="gps_ros", executable="trajopt_node", name="trajopt_node", output="screen",
             parameters=[common]),
        Node(package="gps_ros", executable="trainer_node", name="trainer_node", output="screen",
             parameters=[common]) if _bool(context, "train_policy") else None,
        Node(package="gps_ros", executable="coordinator_node", name="coordinator_node", output="screen",
             parameters=[{**common, "experiment_dir": exp_dir, "num_samplers": n,
                          "sampler_prefix": f"{prefix}/sampler_" if prefix else "sampler_",
                          "iterations": int(LaunchConfiguration("iterations").perform(context))}]),
    ]
    return [a for a in actions if a is not None]


def generate_launch_description():
    share = FindPackageShare("gps_ros")
    return LaunchDescription([
        DeclareLaunchArgument("use_sim", default_value="true",
                              description="true: a PyBullet sim_node per sampler; false: the real robot"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution([share, "config", "panda_reach.yaml"]),
                              description="experiment config YAML"),
        DeclareLaunchArgument("robot_description", default_value="",
                              description="URDF text or file for the safety limits ('' = sim Panda)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace prefix"),
        DeclareLaunchArgument("num_samplers", default_value="1", description="sampler (+ sim) pairs"),
        DeclareLaunchArgument("sampler_params", default_value="",
                              description="sampler parameter YAML (default config/ros/sampler.yaml)"),
        DeclareLaunchArgument("controller", default_value="",
                              description="real robot: the ros2_control command controller ('' = from sampler_params)"),
        DeclareLaunchArgument("experiment_dir", default_value="", description="output directory"),
        DeclareLaunchArgument("iterations", default_value="0", description="0: the config's"),
        DeclareLaunchArgument("train_policy", default_value="false",
                              description="start trainer_node (MDGPS configs)"),
        OpaqueFunction(function=launch_setup),
    ])
