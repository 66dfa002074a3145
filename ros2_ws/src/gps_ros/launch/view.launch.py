"""rviz2 on a running training's live view: the first sampler's arm moving through its trials, the
targets, each condition's planned path and the last iteration's executed paths coloured by cost
(the coordinator's /coordinator_node/markers), in the robot base's frame.

  ros2 launch gps_ros train.launch.py num_samplers:=2 experiment_dir:=$PWD/runs/ros_reach   # terminal 1
  ros2 launch gps_ros view.launch.py                                                           # terminal 2
  ros2 launch gps_ros view.launch.py config:=$PWD/my_task.yaml   # the same config as the training

The rviz2 config (and a Foxglove layout, for Foxglove: Layouts > Import) for the config's robot is
written to out_dir (default: a temporary directory); config/ros/gps_ros.rviz and
config/ros/foxglove_layout.json are the ones of the default Panda reach.  What runs is decided in
gps_ros.launch_plan.view_plan (tested without ROS).
"""
import tempfile

from launch.actions import LogInfo

from gps_ros.launch_plan import describe_access, launch_description, to_launch_nodes, view_plan

ARGS = [
    ("out_dir", "", "where the rviz2 config and the Foxglove layout are written ('' = a "
                    "temporary directory)"),
    ("discovery", "auto", "as train.launch.py's: the viewer must see the training's graph"),
    ("keystore", "", "SROS2 keystore of a secured training: rviz2 runs in the viewer enclave"),
]


def launch_setup(get, share):
    out = get("out_dir") or tempfile.mkdtemp(prefix="gps_ros_view_")
    specs = view_plan(share, get("config"), out_dir=out, discovery=get("discovery"),
                      keystore=get("keystore"))
    return [LogInfo(msg=f"gps_ros view: rviz2 with {out}/gps_ros.rviz (Foxglove: "
                        f"{out}/foxglove_layout.json)\n" + describe_access(specs)),
            *to_launch_nodes(specs)[0]]


def generate_launch_description():
    return launch_description(ARGS, launch_setup, config=(
        "panda_reach.yaml", "the training's experiment config (robot, targets)"))
