"""sampler_node: runs a local controller or the policy at joint rate and records the trial.

Interfaces (relative names; one sampler per namespace)::

  action run_trial               gps_msgs/action/RunTrial (one trial per goal; cancel -> hold)
  sub    joint_states            sensor_msgs/JointState (the safety watchdog's clock)
  sub    gps_state               std_msgs/Float64MultiArray (state_source: gps_state, from sim_node)
  sub    camera/image_raw        sensor_msgs/Image (goals with record_images / policies), or
         camera/image_raw/compressed  sensor_msgs/CompressedImage (``image_transport: compressed``);
                                 every frame goes through the config camera's ImagePipeline (crop +
                                 area resize to the network's size), frames older than
                                 ``max_image_age`` relative to the joint state hold the arm
  sub    e_stop                  std_msgs/Bool (True latches the e-stop)
  srv    ~/reset_e_stop          std_srvs/Trigger (explicit operator reset)
  pub    <controller>/commands   std_msgs/Float64MultiArray (every command through the SafetyFilter)
  pub    joint_states            (state_source: embedded_sim only: the simulated arm, for viewers)
  client reset                   gps_msgs/srv/ResetCondition (``reset_mode: service``, sim_node)

Resets before each trial (``reset_mode``): ``service`` calls the sim's ResetCondition; ``move``
(a real robot) drives the arm itself to the condition's start joint positions with a minimum-jerk
move through the command interface and the safety filter (:mod:`gps_ros.reset`), until within
``reset_position_tolerance`` / ``reset_velocity_tolerance``; a timeout, an e-stop or a stale joint
state discards the trial with the reason; ``wait`` sleeps ``settle_time`` (an operator resets).

State sources: ``embedded_sim`` (the sampler steps its own PyBullet arm: a whole trial at
in-process speed, no message per step), ``gps_state`` (a sim_node in lockstep: one command per
new state), ``fk`` / ``joint_states`` (a real robot: ``rate_hz`` on a monotonic
:class:`RateKeeper`, always with the newest joint state; overruns are counted and reported in the
feedback).  A trial in which the robot did not move although commands were sent is discarded with
"robot did not respond" (the coordinator stops on it).  Each trial is written to
``experiment_dir``/trials when given.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from gps_msgs.action import RunTrial
from gps_msgs.srv import ResetCondition
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger

from gps_ros.robot.actuation import CONTROLLERS
from gps_ros.ros import convert
from gps_ros.ros.clients import wait_future
from gps_ros.ros.common import (ACTION_RESULT_TIMEOUT, SAFETY_PARAMS, camera_frame,
                                camera_pipeline, camera_subscription, declare_parameters,
                                load_experiment_config, robot_from_params, run_node,
                                safety_from_node)
from gps_ros.ros.sampler import (RobotState, check_params, discard_severity, refuse_trial,
                                 run_topic_trial, trial_path)
from gps_ros.ros.trial import (TrialRecorder, actor_from_goal, check_response, goal_noise,
                               run_embedded, sim_host_warning)
from gps_ros.ros.validate import BOUND_PARAMS, Bounds, check_run_trial_goal, check_state
from gps_ros.safety import RateKeeper
from gps_ros.sample import Trajectories

PARAMS = {
    "config": "",
    "controller": "",                 # "": the forward controller of agent.robot.command
    "controller_manager": "",         # ros2_control: its controller_manager (e.g.
                                      # /controller_manager); the controller must be active there
    "rate_hz": 20.0,
    "lockstep": True,
    "state_source": "gps_state",      # embedded_sim | gps_state | fk | joint_states
    "reset_mode": "service",          # service (sim_node) | move (drive to the start pose) | wait
                                      # | trajectory (ros2_control's joint trajectory controller)
    "trajectory_controller": "joint_trajectory_controller",  # reset_mode trajectory
    "reset_service": "reset",         # reset_mode service: the ResetCondition service
    "settle_time": 2.0,               # s; reset_mode wait: the operator's time to reset
    "reset_velocity_scale": 0.2,      # move: profile peak speed, fraction of the URDF limits
    "reset_max_acceleration": 1.0,    # move: rad/s^2 profile peak
    "reset_stiffness": 40.0,          # move, effort: PD gains in acceleration units (1/s^2, 1/s),
    "reset_damping": 12.0,            #   scaled by the robot model's mass matrix
    "reset_viscous_friction": 0.0,    # N m s/rad feedforward (the sim stand-in: its joint_damping)
    "reset_velocity_gain": 2.0,       # move, velocity mode: 1/s
    "reset_position_tolerance": 0.01, # rad
    "reset_velocity_tolerance": 0.02, # rad/s
    "reset_timeout": 5.0,             # s after the profile ends to get within tolerance
    "experiment_dir": "",
    "image_transfer": "path",         # path: frames to experiment_dir/trials/images, paths in the
                                      # result (the learner shares the directory); inline: in it
    "feedback_every": 10,
    "min_motion": 1e-3,               # rad; a trial moving less is "robot did not respond" (0: off)
    "first_state_timeout": 10.0,      # s; a trial waits this long for the robot's (lockstep: the
                                      # sim's) first joint state (launched with the training)
    "publish_every": 10,              # embedded_sim: joint_states every n steps (0: never)
    "image_transport": "raw",         # raw: camera/image_raw; compressed: .../compressed (JPEG/PNG)
    "max_image_age": 0.0,             # s; 0: the config's agent.camera.max_frame_age
    "realtime_priority": 0,           # >0: SCHED_FIFO priority of the control loop (needs the
                                      # rtprio limit or root; as ros2_control's thread_priority)
    **SAFETY_PARAMS,
    **BOUND_PARAMS,                   # what a RunTrial goal may hold (gps_ros.ros.validate)
}


class FKState:
    """Full GPS state from joint states on a real robot, from the robot model of its URDF
    (:meth:`gps_ros.task.TaskModel.state`): q, qd -> [q, qd, EE points - targets, EE point
    velocities] for the condition of the trial."""

    def __init__(self, task) -> None:
        self.task = task
        self.condition = 0

    def reset(self, condition: int) -> None:
        self.condition = int(condition)

    def __call__(self, q, qd) -> np.ndarray:
        return self.task.state(q, qd, self.condition)


def set_realtime_priority(priority: int, logger) -> bool:
    """SCHED_FIFO ``priority`` for the calling thread (Linux); a warning if not permitted."""
    if priority <= 0 or not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (OSError, ValueError) as err:
        logger.warning(f"realtime_priority {priority} not applied ({err}); set the rtprio limit "
                       "(/etc/security/limits.conf) or run with CAP_SYS_NICE", once=True)
        return False


class LatestMessage:
    """The newest message of a topic, taken by the caller's thread on demand (no executor).

    The subscription lives on a node of its own that no executor spins, so messages wait in the
    middleware queue until :meth:`take` drains it.  The topic name is resolved by ``node`` (its
    namespace and remappings), the helper node ignores the process's global arguments (its name
    must not be remapped onto ``node``'s).
    """

    def __init__(self, node: Node, msg_type, topic: str) -> None:
        self.topic_name = node.resolve_topic_name(topic)
        self.node = Node(f"{node.get_name()}_{topic.replace('/', '_')}_poll",
                         namespace=node.get_namespace(), context=node.context,
                         use_global_arguments=False, enable_rosout=False,
                         start_parameter_services=False)
        self.sub = self.node.create_subscription(msg_type, self.topic_name, lambda _msg: None,
                                                 qos_profile_sensor_data)

    def take(self):
        """The newest queued message (older ones are dropped), or None."""
        last = None
        sub = self.sub
        with sub.handle:
            while True:
                got = sub.handle.take_message(sub.msg_type, sub.raw)
                if got is None:
                    return last
                last = got[0]


class SamplerNode(Node):
    def __init__(self):
        super().__init__("sampler_node")
        p = self.p = declare_parameters(self, PARAMS, on_live=self.on_live_parameter)
        check_params(p)
        self.cfg = load_experiment_config(p.config)
        self.task = robot_from_params(self.cfg, p, self)    # the robot model (robot_description)
        self.joints = list(self.task.joint_names)
        self.rate_hz = float(p.rate_hz)
        self.embedded = p.state_source == "embedded_sim"
        self.lockstep = bool(p.lockstep) or self.embedded
        self.order = convert.JointOrder(self.joints)
        self.fk = self.sim = self.camera = None
        if self.embedded:
            from gps_ros.agents.sim import build_sim

            self.sim, cam = build_sim(self.cfg.agent, task=self.task)   # the simulated robot itself
            self.camera = (lambda: cam.render(self.sim)) if cam is not None else None
            self.rate_hz = 1.0 / self.sim.dt               # its control period
        elif p.state_source == "fk":
            self.fk = FKState(self.task)
        self.safety = safety_from_node(p, self.task, self.rate_hz)
        self.image_pipeline = camera_pipeline(self.cfg.agent.camera, None, p.max_image_age,
                                              self.safety)
        self.reset_settings = self._reset_settings() if p.reset_mode == "move" else None
        full = p.state_source != "joint_states"             # the full GPS state, else [q, qd]
        self.dX = self.task.dX if full else 2 * len(self.joints)
        self.joint_idx = (self.task.layout.joint_state_indices if full
                          else np.arange(2 * len(self.joints)))

        self.bounds = Bounds.for_task(self.task, self.dX, self.cfg.agent.T,
                                      self.task.num_conditions, p)
        self.state = RobotState(self.fk, from_joint_states=p.state_source != "gps_state")
        self._busy = threading.Lock()
        self._stopping = threading.Event()

        sensors = ReentrantCallbackGroup()
        self.controller_name = p.controller or CONTROLLERS[self.task.command]
        self.command_pub = self.create_publisher(Float64MultiArray,
                                                 f"{self.controller_name}/commands", 10)
        if self.embedded:
            self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
            self._js_msg = JointState(name=self.joints)
        else:
            if self.lockstep:
                self.joint_sub = self.create_subscription(
                    JointState, "joint_states", self.joint_state_callback, 10,
                    callback_group=sensors)
            else:
                # free-running (a robot at rate_hz): the control loop takes the newest joint
                # state itself; no executor callback per message (1 kHz of them starve a 500 Hz
                # Python loop of the GIL)
                self.joint_poll = LatestMessage(self, JointState, "joint_states")
            if p.state_source == "gps_state":
                self.state_sub = self.create_subscription(
                    Float64MultiArray, "gps_state", self.state_callback, 10, callback_group=sensors)
            self.image_sub = camera_subscription(self, p.image_transport, self.image_callback,
                                                 callback_group=sensors)
        self.e_stop_sub = self.create_subscription(Bool, "e_stop", self.e_stop_callback, 10,
                                                   callback_group=sensors)
        self.reset_e_stop_srv = self.create_service(Trigger, "~/reset_e_stop",
                                                    self.reset_e_stop_callback)
        self.reset_client = (self.create_client(ResetCondition, p.reset_service,
                                                callback_group=MutuallyExclusiveCallbackGroup())
                             if p.reset_mode == "service" and not self.embedded else None)
        self.cm_client = None
        if p.controller_manager and not self.embedded:
            from controller_manager_msgs.srv import ListControllers

            self.cm_client = self.create_client(
                ListControllers, f"{p.controller_manager.rstrip('/')}/list_controllers",
                callback_group=MutuallyExclusiveCallbackGroup())
        self.switch_client = self.trajectory_client = None
        if p.reset_mode == "trajectory":
            from control_msgs.action import FollowJointTrajectory
            from controller_manager_msgs.srv import SwitchController
            from rclpy.action import ActionClient

            cm = p.controller_manager.rstrip("/")
            self.switch_client = self.create_client(
                SwitchController, f"{cm}/switch_controller",
                callback_group=MutuallyExclusiveCallbackGroup())
            self.trajectory_client = ActionClient(
                self, FollowJointTrajectory,
                f"{cm.rsplit('/', 1)[0]}/{p.trajectory_controller}/follow_joint_trajectory",
                callback_group=MutuallyExclusiveCallbackGroup())
        self._round_trip_reported = self._host_checked = False
        self.action_server = ActionServer(
            self, RunTrial, "run_trial", execute_callback=self.execute_callback,
            goal_callback=self.goal_callback, cancel_callback=self.cancel_callback,
            callback_group=ReentrantCallbackGroup(), result_timeout=ACTION_RESULT_TIMEOUT)
        mode = ("embedded simulation" if self.embedded else
                "lockstep" if self.lockstep else f"{self.rate_hz:g} Hz")
        self.get_logger().info(f"{mode}, {self.safety.mode} commands on "
                               f"{self.command_pub.topic_name}, state from {p.state_source}")

    def on_live_parameter(self, name: str, value) -> None:
        """effort_scale / velocity_scale: the safety filter's clamp, from the next command on."""
        self.safety.rescale(**{name: float(value)})
        self.get_logger().warning(f"{name} set to {value:g}: commands clamped to it from now on")

    # --- sensors --------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def joint_state_callback(self, msg):
        try:
            q, qd = self.order.extract(msg)
        except convert.ShapeError as err:
            self.get_logger().error(str(err), throttle_duration_sec=1.0)
            return
        self.state.on_joint_state(q, qd, convert.time_to_seconds(msg.header.stamp) or self.now())

    def state_callback(self, msg):
        refusal = check_state(msg.data, self.dX)
        if refusal:
            self.get_logger().error(f"ignoring {refusal}", throttle_duration_sec=1.0)
            return
        self.state.on_state(msg.data)

    def image_callback(self, msg):
        frame = camera_frame(self, msg, self.image_pipeline)
        if frame is not None:
            self.state.image = frame

    def e_stop_callback(self, msg):
        if msg.data:
            self.safety.e_stop("e_stop topic")
            self.publish(self.safety.hold(None))
            self.get_logger().error("E-STOP latched: holding; call ~/reset_e_stop to clear")

    def reset_e_stop_callback(self, request, response):
        self.safety.reset_e_stop()
        response.success, response.message = True, "e-stop reset"
        self.get_logger().warning("e-stop reset by service call")
        return response

    def publish(self, u):
        """Send a command (None: nothing to send, a position-mode hold before any joint state)."""
        if u is not None and rclpy.ok(context=self.context):
            self.command_pub.publish(convert.command_to_msg(u, Float64MultiArray()))

    def publish_sim_joints(self, t: int, x: np.ndarray):
        every = int(self.p.publish_every)
        if every > 0 and (t % every == 0) and rclpy.ok(context=self.context):
            lay = self.task.layout
            m = self._js_msg
            m.header.stamp = self.get_clock().now().to_msg()
            m.position, m.velocity = x[lay.joint_pos].tolist(), x[lay.joint_vel].tolist()
            self.joint_pub.publish(m)

    # --- action ---------------------------------------------------------------------------------
    def goal_callback(self, goal):
        if self._stopping.is_set():
            return GoalResponse.REJECT
        if self._busy.locked():
            return GoalResponse.REJECT                 # one trial at a time per robot
        if self.safety.e_stopped:
            self.get_logger().error("rejecting trial: e-stop latched")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def cancel_callback(self, goal_handle):
        return CancelResponse.ACCEPT

    def next_state(self, after_seq: int, rate: RateKeeper):
        """(seq, state, joint state) of the next control step: lockstep, the next state the sim
        sends (up to the watchdog's age, or 10 periods; for the sim's very first state up to
        ``first_state_timeout``: a sim_node started with the training may still be loading, and a
        loaded machine delayed it past the watchdog's age); free-running, at the next ``rate``
        tick the newest joint state, taken from the middleware queue by this thread."""
        if self.lockstep:
            timeout = max(self.safety.max_age, 10.0 / self.rate_hz)
            if self.state.joint_state is None:
                timeout = max(timeout, float(self.p.first_state_timeout))
            return self.state.wait(after_seq, timeout)
        rate.sleep()
        msg = self.joint_poll.take()
        if msg is not None:
            self.joint_state_callback(msg)
        return self.state.latest()

    def _reset_settings(self):
        from gps_ros.reset import ResetSettings

        p = self.p
        return ResetSettings(
            max_velocity=self.safety.limits.velocity * float(p.reset_velocity_scale),
            max_acceleration=float(p.reset_max_acceleration), stiffness=float(p.reset_stiffness),
            damping=float(p.reset_damping), velocity_gain=float(p.reset_velocity_gain),
            viscous_friction=float(p.reset_viscous_friction),
            position_tolerance=float(p.reset_position_tolerance),
            velocity_tolerance=float(p.reset_velocity_tolerance),
            settle_timeout=float(p.reset_timeout))

    def move_to_start(self, goal_handle, condition: int):
        """reset_mode move: drive the arm to the condition's start pose (through the filter)."""
        from gps_ros.reset import JointMove, run_move, start_pose

        mass = self.task.mass_matrix if self.safety.mode == "effort" else None
        move = JointMove(start_pose(self.cfg.agent, condition), self.safety, self.reset_settings,
                         mass_matrix=mass)
        seq = [self.state.seq]
        rate = RateKeeper(self.rate_hz)

        def wait():
            seq[0] = self.next_state(seq[0], rate)[0]

        st = run_move(move, lambda: self.state.joint_state, self.publish, wait, self.now,
                      lambda: self._stop_requested(goal_handle))
        if st.failed:
            raise RuntimeError(st.reason)
        self.get_logger().info(f"reset to condition {condition}: {st.elapsed:.2f} s, max joint "
                               f"error {st.position_error * 1e3:.1f} mrad, speed "
                               f"{st.velocity:.3f} rad/s")

    def switch_controllers(self, activate: str, deactivate: str) -> None:
        """ros2_control: activate one controller and deactivate another in one strict switch."""
        from builtin_interfaces.msg import Duration
        from controller_manager_msgs.srv import SwitchController

        req = SwitchController.Request(activate_controllers=[activate],
                                       deactivate_controllers=[deactivate],
                                       strictness=SwitchController.Request.STRICT,
                                       activate_asap=True, timeout=Duration(sec=5))
        if not self.switch_client.wait_for_service(timeout_sec=5.0):
            raise RuntimeError(f"no {self.switch_client.srv_name}")
        res = wait_future(self.switch_client.call_async(req), 10.0, "switch_controller")
        if not res.ok:
            raise RuntimeError(f"{self.switch_client.srv_name} refused to activate {activate} "
                               f"and deactivate {deactivate}: {res.message}")

    def trajectory_reset(self, goal_handle, condition: int) -> None:
        """reset_mode trajectory (ros2_control): switch from the command controller to the joint
        trajectory controller, follow one rest-to-rest trajectory to the condition's start pose
        (no joint faster than ``reset_velocity_scale`` x its limit), switch back, check the pose.
        An e-stop or a cancel stops the trajectory (the controller holds)."""
        from builtin_interfaces.msg import Duration
        from control_msgs.action import FollowJointTrajectory
        from trajectory_msgs.msg import JointTrajectoryPoint

        from gps_ros.reset import start_pose
        from gps_ros.robot.ros2_control import trajectory_duration

        p, t0 = self.p, time.monotonic()
        js = self.latest_joint_state()
        if js is None:
            raise RuntimeError("no joint state to start the reset trajectory from")
        q_goal = start_pose(self.cfg.agent, condition)
        vmax = self.safety.limits.velocity * float(p.reset_velocity_scale)
        T = trajectory_duration(js.position, q_goal, vmax)
        n = len(self.joints)
        goal = FollowJointTrajectory.Goal()
        goal.trajectory.joint_names = list(self.joints)
        point = JointTrajectoryPoint(positions=[float(q) for q in q_goal], velocities=[0.0] * n,
                                     accelerations=[0.0] * n)
        point.time_from_start = Duration(sec=int(T), nanosec=int((T % 1.0) * 1e9))
        goal.trajectory.points = [point]
        jtc = p.trajectory_controller
        if not self.trajectory_client.wait_for_server(timeout_sec=5.0):
            raise RuntimeError(f"{jtc}'s FollowJointTrajectory action is not available")
        self.switch_controllers(jtc, self.controller_name)
        try:
            handle = wait_future(self.trajectory_client.send_goal_async(goal), 10.0,
                                 "trajectory goal")
            if not handle.accepted:
                raise RuntimeError(f"{jtc} rejected the reset trajectory")
            result = handle.get_result_async()
            deadline = time.monotonic() + T + float(p.reset_timeout)
            while not result.done():
                if self.safety.e_stopped or self._stop_requested(goal_handle):
                    handle.cancel_goal_async()
                    raise RuntimeError("e-stop latched" if self.safety.e_stopped
                                       else "stopped during the reset")
                if time.monotonic() > deadline:
                    handle.cancel_goal_async()
                    raise RuntimeError(f"{jtc} did not finish the reset within {T:.1f} + "
                                       f"{p.reset_timeout:g} s")
                time.sleep(0.02)
            res = result.result().result
            if res.error_code != FollowJointTrajectory.Result.SUCCESSFUL:
                raise RuntimeError(f"{jtc}: {res.error_string or 'error'} ({res.error_code})")
        finally:
            self.switch_controllers(self.controller_name, jtc)
        time.sleep(2.0 / self.rate_hz)
        js = self.latest_joint_state()
        err = float(np.abs(np.asarray(js.position) - q_goal).max())
        if err > float(p.reset_position_tolerance):
            raise RuntimeError(f"the reset trajectory ended {err * 1e3:.1f} mrad from the start "
                               f"pose (reset_position_tolerance {p.reset_position_tolerance:g})")
        self.get_logger().info(f"reset to condition {condition}: {time.monotonic() - t0:.2f} s, "
                               f"max joint error {err * 1e3:.1f} mrad ({jtc}, {T:.2f} s "
                               f"trajectory)")

    def latest_joint_state(self):
        """The newest joint state (free-running: taken from the middleware queue now)."""
        if not self.lockstep:
            msg = self.joint_poll.take()
            if msg is not None:
                self.joint_state_callback(msg)
        return self.state.joint_state

    def reset_robot(self, condition: int, goal_handle=None):
        if self.fk is not None:
            self.fk.reset(condition)
        if self.p.reset_mode == "move":
            self.move_to_start(goal_handle, condition)
            return
        if self.p.reset_mode == "trajectory":
            self.trajectory_reset(goal_handle, condition)
            return
        if self.reset_client is None:
            self._stopping.wait(float(self.p.settle_time))  # the operator / robot program resets
            return
        if not self.reset_client.wait_for_service(timeout_sec=10.0):
            raise RuntimeError(f"reset service {self.reset_client.srv_name} not available")
        req = ResetCondition.Request()
        req.condition = condition
        res = wait_future(self.reset_client.call_async(req), 30.0, "reset")
        if not res.success:
            raise RuntimeError(f"reset failed: {res.message}")
        self.check_sim_host(res.host)

    def execute_callback(self, goal_handle):
        with self._busy:
            return self._run(goal_handle)

    def _stop_requested(self, goal_handle) -> bool:
        if goal_handle.is_cancel_requested:
            self.safety.cancel("trial cancelled by the client")
        return self._stopping.is_set() or goal_handle.is_cancel_requested

    def _run(self, goal_handle):
        goal = goal_handle.request
        result = RunTrial.Result()
        try:
            check_run_trial_goal(goal, self.bounds)
            actor, source, T, dU = actor_from_goal(goal, joint_idx=self.joint_idx)
            noise = goal_noise(goal, T, dU)
        except Exception as err:  # noqa: BLE001 - refused: one line, the reason in the result
            return self._refuse(goal_handle, result, f"RunTrial goal refused: {err}")
        problem = self.controller_problem()
        if problem:
            return self._refuse(goal_handle, result, f"no trial: {problem}")
        rec = TrialRecorder(actor, int(goal.condition), T, self.dX, dU, noise, self.safety,
                            seed=int(goal.noise_seed), source=source,
                            record_images=bool(goal.record_images))
        if self.embedded:
            lay = self.task.layout
            run_embedded(rec, self.sim, int(goal.condition), lay.joint_pos, lay.joint_vel,
                         camera=self.camera if goal.record_images or getattr(actor, "needs_image", False)
                         else None,
                         should_stop=lambda: self._stop_requested(goal_handle),
                         on_step=self.publish_sim_joints)
            overruns = 0
        else:
            overruns = self._run_topics(goal_handle, goal, rec, T)
        self.publish(self.safety.hold(self.state.joint_state))
        if not rec.meta.discarded and self.p.min_motion > 0:
            reason = check_response(rec.X, rec.U, self.joint_idx[:len(self.joints)],
                                    min_motion=float(self.p.min_motion))
            if reason:
                rec.discard(f"{reason} ({self.command_pub.topic_name})")
        image_dir = (Path(self.p.experiment_dir) / "trials" / "images"
                     if self.p.experiment_dir and self.p.image_transfer == "path" else None)
        rec.result(result.trajectory, convert.ros_types(), image_dir=image_dir)
        result.trajectory.header.stamp = self.get_clock().now().to_msg()
        self.save(rec)
        # (two call sites: rclpy refuses a second severity at one logging call site)
        severity = discard_severity(rec.meta, self.safety.cancelled)
        if severity == "error":
            self.get_logger().error(f"trial discarded: {rec.meta.reason}")
        elif severity == "warning":
            self.get_logger().warning(f"trial discarded: {rec.meta.reason}")
        if self._stopping.is_set():
            goal_handle.abort()
        elif self.safety.cancelled:
            goal_handle.canceled()
        else:
            goal_handle.succeed()
        if overruns:
            self.get_logger().warning(f"{overruns} control periods overran in this trial")
        return result

    def _refuse(self, goal_handle, result, why: str):
        """No trial: one error line, the goal aborted with ``why`` in its result."""
        self.get_logger().error(why)
        refuse_trial(result.trajectory, int(goal_handle.request.condition), why)
        goal_handle.abort()
        return result

    def _run_topics(self, goal_handle, goal, rec, T) -> int:
        """The trial over topics: lockstep with a sim_node, or at rate_hz on a robot."""
        seq = self.state.seq                 # before the reset: its state is the trial's first
        if not self.lockstep:      # (the reset move runs at rate_hz too)
            # another Python thread holding the GIL delays this loop by up to the interpreter's
            # switch interval (5 ms by default): a fraction of a control period instead
            sys.setswitchinterval(min(sys.getswitchinterval(), 0.1 / self.rate_hz))
            set_realtime_priority(int(self.p.realtime_priority), self.get_logger())
        if not self.lockstep and self.state.joint_state is None:
            self.wait_first_joint_state(goal_handle)
        try:
            self.reset_robot(int(goal.condition), goal_handle)
        except Exception as err:  # noqa: BLE001
            rec.abort(f"reset failed: {err}")
            self.get_logger().error(f"reset failed: {err}")
        rate = RateKeeper(self.rate_hz)
        feedback = RunTrial.Feedback()

        def send_feedback(t):
            feedback.step, feedback.horizon, feedback.overruns = t, T, rate.overruns
            goal_handle.publish_feedback(feedback)

        trips = run_topic_trial(
            rec, self.state, seq, lambda after: self.next_state(after, rate), self.publish, self.now,
            stop_requested=lambda: self._stop_requested(goal_handle),
            shutting_down=self._stopping.is_set, cancelled=lambda: self.safety.cancelled,
            wants_image=bool(goal.record_images) or getattr(rec.actor, "needs_image", False),
            feedback=send_feedback, feedback_every=int(self.p.feedback_every),
            lockstep=self.lockstep)
        if self.lockstep and trips:
            self.check_sim_round_trip(float(np.median(trips)))
        return rate.overruns

    def wait_first_joint_state(self, goal_handle) -> None:
        """Free-running: wait up to ``first_state_timeout`` s for the robot's first joint state
        (a robot or stand-in launched with the training may still be starting); without one the
        trial is discarded with "no joint state received yet" as before."""
        end = time.monotonic() + float(self.p.first_state_timeout)
        logged = False
        while self.state.joint_state is None and not self._stop_requested(goal_handle):
            msg = self.joint_poll.take()
            if msg is not None:
                self.joint_state_callback(msg)
                break
            if time.monotonic() >= end:
                return
            if not logged:
                logged = True
                self.get_logger().info(f"waiting up to {self.p.first_state_timeout:g} s for the "
                                       f"first joint state on {self.joint_poll.topic_name}")
            time.sleep(0.02)

    def controller_problem(self):
        """With ``controller_manager``: why the command controller cannot take commands now
        (not loaded, inactive, no controller manager), else None."""
        if self.cm_client is None:
            return None
        from controller_manager_msgs.srv import ListControllers

        from gps_ros.robot.ros2_control import controller_problem

        manager = self.p.controller_manager
        if not self.cm_client.wait_for_service(timeout_sec=5.0):
            return f"controller manager {manager} is not running (no {self.cm_client.srv_name})"
        res = wait_future(self.cm_client.call_async(ListControllers.Request()), 10.0,
                          "list_controllers")
        return controller_problem([(c.name, c.state) for c in res.controller],
                                  self.controller_name, manager)

    def check_sim_round_trip(self, median: float) -> None:
        """Lockstep: log the command -> next state round trip through the sim_node, once."""
        if not self._round_trip_reported:
            self._round_trip_reported = True
            self.get_logger().info(f"lockstep round trip through the sim: median "
                                   f"{median * 1e3:.2f} ms per step")

    def check_sim_host(self, host: str) -> None:
        """The rule of several hosts: a sim_node runs on its sampler's host (in lockstep every
        control step crosses the network twice otherwise: sampling ~3x slower at 2 ms latency).
        Checked at the first reset, from the host the sim reports; warned once."""
        if self._host_checked or not host:
            return
        self._host_checked = True
        warning = sim_host_warning(host, socket.gethostname(), self.reset_client.srv_name)
        if warning:
            self.get_logger().warning(warning)

    def save(self, rec):
        if not self.p.experiment_dir:
            return
        path = trial_path(self.p.experiment_dir, self.get_namespace(), rec.meta.condition)
        path.parent.mkdir(parents=True, exist_ok=True)
        Trajectories(rec.X[None], rec.U[None], [rec.meta]).save(path)

    def stop(self):
        """On the way out (context still valid): end the running trial, hold, close the sim."""
        self._stopping.set()
        self.state.stop()
        ended = self._busy.acquire(timeout=3.0)      # the running trial has ended
        self.publish(self.safety.hold(self.state.joint_state))
        if ended:
            if self.sim is not None:
                self.sim.close()
                self.sim = None
            self._busy.release()


def main(args=None):
    return run_node(SamplerNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
