"""Deploy a trained policy: policy_node (+ a free-running sim_node with use_sim:=true).

  ros2 launch gps_ros deploy.launch.py checkpoint:=runs/x/policy.pt
  ros2 launch gps_ros deploy.launch.py checkpoint:=... use_sim:=false \\
      policy_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/franka_effort.yaml

The sim uses the config.yaml of the run the checkpoint lies in (the camera and scene the policy
was trained with) unless config:= is given.  policy_node starts *disabled* (holding); enable it with
  ros2 service call /policy_node/enable std_srvs/srv/SetBool "{data: true}"
"""
from launch.actions import LogInfo

from gps_ros.launch_plan import (deploy_plan, describe, describe_access, launch_description,
                                 to_launch_nodes)

ARGS = [
    ("use_sim", "true", "true: the config's robot simulated, free-running; false: the real "
                        "robot's topics"),
    ("config", "", "task config for the sim ('' = config.yaml of the checkpoint's run)"),
    ("namespace", "", "robot namespace"),
    ("robot_description", "", "URDF text or file of the robot model and its safety limits "
                              "('' = the config's agent.robot.urdf)"),
    ("policy_params", "", "policy_node parameter YAML (default config/ros/policy.yaml)"),
    ("controller", "", "the ros2_control command controller ('' = the one in policy_params)"),
    ("image_transport", "raw", "policy_node's camera: raw (camera/image_raw) or compressed "
     "(camera/image_raw/compressed, JPEG / PNG)"),
    ("overlay", "false", "publish /policy_node/overlay: the policy's camera frame with its "
     "feature points (rqt_image_view, Foxglove)"),
    ("keystore", "", "SROS2 keystore (ros2 run gps_ros create_keystore DIR): every node in its "
     "enclave, ROS_SECURITY_ENABLE=true, Enforce ('' = as the environment says)"),
    ("discovery", "auto", "how far the graph is visible: localhost (this host; Cyclone DDS on "
     "loopback unless CYCLONEDDS_URI is set), subnet (the network), auto (ROS_AUTOMATIC_"
     "DISCOVERY_RANGE if exported, else subnet for role learner / samplers, else localhost)"),
    ("sim_params", "", "extra parameters of the simulated setup (sim_node and policy_node "
     "sections), e.g. config/ros/camera_640x480.yaml"),
]


def launch_setup(get, share):
    specs = deploy_plan(share, get("checkpoint"), **{k: get(k) for k, _, _ in ARGS})
    nodes, _ = to_launch_nodes(specs)
    ns = get("namespace").strip("/")
    enable = f"/{ns}/policy_node/enable" if ns else "/policy_node/enable"
    return [LogInfo(msg="gps_ros deploy:\n" + describe(specs) + "\n" + describe_access(specs)
                        + "\nholding until: ros2 service "
                        f"call {enable} std_srvs/srv/SetBool \"{{data: true}}\""), *nodes]


def generate_launch_description():
    return launch_description(ARGS, launch_setup,
                              required=[("checkpoint", "TorchScript export of the policy (.pt)")])
