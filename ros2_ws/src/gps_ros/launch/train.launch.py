"""GPS training over ROS 2: N samplers (each with its simulated robot, or on a real robot),
dynamics_node, trajopt_node, trainer_node (MDGPS configs) and the coordinator_node running the GPS
loop over them.  The launch ends when training ends (exit code 1 if it failed) and prints where
the results are.

  ros2 launch gps_ros train.launch.py num_samplers:=2 experiment_dir:=runs/ros_reach
  ros2 launch gps_ros train.launch.py config:=$PWD/my_task.yaml sim_mode:=lockstep
  ros2 launch gps_ros train.launch.py use_sim:=false robot_description:=/path/robot.urdf \\
      sampler_params:=$(ros2 pkg prefix gps_ros)/share/gps_ros/config/ros/franka_effort.yaml

What runs with which parameters is decided in gps_ros.launch_plan.train_plan (tested without ROS).
"""
from launch import Event, EventHandler
from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown

from gps_ros.launch_plan import (describe, describe_access, launch_description, to_launch_nodes,
                                 train_plan)

ARGS = [
    ("use_sim", "true", "true: the config's robot simulated per sampler; false: the real "
                        "robot's topics"),
    ("sim_mode", "embedded", "use_sim: embedded (the sampler steps its own PyBullet arm, fast) or "
                             "lockstep (a sim_node per sampler, one command per state over topics)"),
    ("num_samplers", "1", "samplers (robots) trials are spread over"),
    ("robot_description", "", "URDF text or file of the robot model and its safety limits "
                              "('' = the config's agent.robot.urdf)"),
    ("namespace", "", "namespace prefix (the robot's namespace with use_sim:=false)"),
    ("sampler_params", "", "sampler parameter YAML (default config/ros/sampler.yaml)"),
    ("controller", "", "the ros2_control command controller ('' = the one in sampler_params)"),
    ("experiment_dir", "", "output directory (default runs/NAME-seedS-TIME); an existing one resumes"),
    ("iterations", "0", "total iterations (0: the config's)"),
    ("train_policy", "auto", "start trainer_node: auto (MDGPS configs), true or false"),
    ("role", "all", "several hosts: all (one host), learner (coordinator, dynamics, trajopt, "
     "trainer) or samplers (this host's samplers + sims)"),
    ("sampler_indices", "", "role:=samplers: this host's samplers, e.g. 2,3 or 2-3 ('' = all "
     "num_samplers)"),
    ("samplers", "", "learner: the samplers to use, comma-separated action names or namespaces "
     "(default /<namespace>/sampler_i/run_trial for i < num_samplers)"),
    ("min_samplers", "0", "learner: start once this many samplers answer (0 = all); the others "
     "join when they come up, a lost one's trials are re-run on the others"),
    ("sampler_wait", "30.0", "learner: seconds to wait for min_samplers at start"),
    ("controller_manager", "", "use_sim:=false on a ros2_control arm: its controller manager "
     "(e.g. /controller_manager); the samplers check their controller is active there"),
    ("keystore", "", "SROS2 keystore (ros2 run gps_ros create_keystore DIR): every node in its "
     "enclave, ROS_SECURITY_ENABLE=true, Enforce ('' = as the environment says)"),
    ("discovery", "auto", "how far the graph is visible: localhost (this host; Cyclone DDS on "
     "loopback unless CYCLONEDDS_URI is set), subnet (the network), auto (ROS_AUTOMATIC_"
     "DISCOVERY_RANGE if exported, else subnet for role learner / samplers, else localhost)"),
    ("tf", "true", "one host, simulated: robot_state_publisher on the first sampler's arm, so "
     "rviz2 / Foxglove show it under the coordinator's markers (ros2 launch gps_ros "
     "view.launch.py)"),
    ("prepare_conditions", "false", "true: before each condition's trials the coordinator asks the "
     "operator to set it up (Enter in this terminal, or ros2 service call "
     "/coordinator_node/continue std_srvs/srv/Trigger)"),
]


def launch_setup(get, share):
    specs = train_plan(share, get("config"), **{k: get(k) for k, _, _ in ARGS})
    nodes, coordinator = to_launch_nodes(specs)
    if coordinator is None:                      # role:=samplers: serve trials until Ctrl-C
        return [LogInfo(msg="gps_ros train (samplers of this host; the learner runs elsewhere):\n"
                            + describe(specs) + "\n" + describe_access(specs)), *nodes]
    exp_dir = [p for p in specs if p.role == "coordinator"][0].param("experiment_dir")

    def on_coordinator_exit(event, context):
        if context.is_shutdown:                  # Ctrl-C: the coordinator stopped mid-training
            return [LogInfo(msg=f"training interrupted: completed iterations are in {exp_dir} "
                                f"(relaunch with experiment_dir:={exp_dir} to resume)")]
        if event.returncode != 0:
            # raised from an event of its own, after every handler of this exit has run
            return [EmitEvent(event=TrainingFailed(
                f"training failed (coordinator_node exit code {event.returncode}); completed "
                f"iterations are in {exp_dir} (relaunch with experiment_dir:={exp_dir} to resume)"))]
        return [LogInfo(msg=f"training done: results in {exp_dir}"),
                EmitEvent(event=Shutdown(reason="training done"))]

    return [LogInfo(msg="gps_ros train:\n" + describe(specs) + f"\nexperiment_dir: {exp_dir}\n"
                        + describe_access(specs)),
            *nodes,
            RegisterEventHandler(OnProcessExit(target_action=coordinator,
                                               on_exit=on_coordinator_exit)),
            RegisterEventHandler(OnTrainingFailed())]


class TrainingFailed(Event):
    """The coordinator exited with an error (its message is the launch's last word)."""

    name = "gps_ros.TrainingFailed"

    def __init__(self, message: str):
        super().__init__()
        self.message = message


class OnTrainingFailed(EventHandler):
    """Raises: ``ros2 launch`` then shuts everything down and exits with code 1."""

    def __init__(self):
        super().__init__(matcher=lambda event: isinstance(event, TrainingFailed))

    def handle(self, event, context):
        raise RuntimeError(event.message)


def generate_launch_description():
    return launch_description(ARGS, launch_setup,
                              config=("panda_reach.yaml", "experiment config YAML"))
