"""sim_node: the simulated robot (PyBullet) standing in for ros2_control hardware + a forward command controller.

Interfaces (relative names, so a namespace puts them under e.g. /sampler_0/)::

  pub  joint_states            sensor_msgs/JointState (agent.robot.joints: position, velocity, effort)
  pub  gps_state               std_msgs/Float64MultiArray, the full GPS state vector (q, qd, EE points)
  pub  camera/image_raw        sensor_msgs/Image (only if the sim has a camera), ``image_encoding``
                               rgb8 | bgr8 | rgba8 | bgra8 | mono8, ``image_width`` x ``image_height``
                               (0: the config camera's size; a wider frame keeps the vertical field
                               of view, so its centred square is the training camera's view)
  pub  camera/image_raw/compressed  sensor_msgs/CompressedImage (``compressed: jpeg | png``)
  pub  /clock                  rosgraph_msgs/Clock (when publish_clock, e.g. with use_sim_time)
  sub  <controller>/commands   std_msgs/Float64MultiArray, one command per joint in the robot's
                               interface (agent.robot.command: torques, velocities or positions,
                               as a forward_command_controller takes them)
  srv  reset                   gps_msgs/srv/ResetCondition

``lockstep: true`` (training): one control period is simulated per received command, so a trial
runs as fast as the sampler can compute and equals the in-process one.  ``lockstep: false``: a timer
at ``rate_hz`` applies the latest command (zero-order hold; zero after ``command_timeout``).
``camera_rate_hz > 0`` renders the camera in a thread of its own at that rate, on a kinematic copy of
the arm posed from a snapshot of the state (a 640x480 frame takes ~0.1 s here and must not stall the
physics), stamped with the snapshot's time, as a real camera's frames arrive late and at their own
rate; 0 renders every published state synchronously (lockstep training).
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

import rclpy
from gps_msgs.srv import ResetCondition
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock as RosClock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray

from gps_ros.agents.sim import build_sim
from gps_ros.robot.actuation import CONTROLLERS
from gps_ros.ros import convert
from gps_ros.ros.common import declare_parameters, load_experiment_config, run_node
from gps_ros.ros.sim_standin import SimStandIn

PARAMS = {
    "config": "",
    "controller": "",                 # "": the forward controller of agent.robot.command
    "lockstep": True,
    "rate_hz": 0.0,            # 0: the config's control_rate_hz
    "command_timeout": 0.2,
    "publish_clock": False,
    "initial_condition": 0,
    "image_width": 0,          # 0: the config camera's width / height
    "image_height": 0,
    "image_encoding": "rgb8",  # rgb8 | bgr8 | rgba8 | bgra8 | mono8 ("": no raw stream)
    "compressed": "",          # "" | jpeg | png: also publish camera/image_raw/compressed
    "jpeg_quality": 90,
    "camera_rate_hz": 0.0,     # 0: a frame with every published state; > 0: own thread and rate
}


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        p = self.p = declare_parameters(self, PARAMS)
        cfg = load_experiment_config(p.config)
        self.sim, cam = build_sim(cfg.agent)
        rate = p.rate_hz or cfg.agent.control_rate_hz
        self.dt = 1.0 / rate if p.rate_hz else self.sim.dt
        self.joint_names = list(self.sim.task.joint_names)   # the config's robot
        self.lockstep = bool(p.lockstep)
        self.robot = SimStandIn(self.sim, self.dt, self.lockstep, p.command_timeout,
                                p.initial_condition)
        self.cam = cam
        if cam is not None and (p.image_width or p.image_height):
            from gps_ros.sim.camera import Camera

            self.cam = Camera(cam.cfg, width=int(p.image_width or cam.width),
                              height=int(p.image_height or cam.height))
        self.image_encoding, self.compressed = str(p.image_encoding), str(p.compressed)
        self.jpeg_quality = int(p.jpeg_quality)
        self.camera_rate = float(p.camera_rate_hz)
        if cam is not None:   # fail at start-up, not on the first frame
            from gps_ros.image_pipeline import encode_compressed, encode_raw

            probe = np.zeros((2, 2, 3), np.uint8)
            if self.image_encoding:
                encode_raw(probe, self.image_encoding)
            if self.compressed:
                encode_compressed(probe, self.compressed)

        group = MutuallyExclusiveCallbackGroup()        # physics is single-threaded
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.state_pub = self.create_publisher(Float64MultiArray, "gps_state", 10)
        self.image_pub = (self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
                          if self.cam is not None and self.image_encoding else None)
        self.compressed_pub = (self.create_publisher(CompressedImage, "camera/image_raw/compressed",
                                                     qos_profile_sensor_data)
                               if self.cam is not None and self.compressed else None)
        self._render_thread = None
        if self.cam is not None and self.camera_rate > 0:
            self._render_sim = build_sim(cfg.agent)[0]    # kinematics only, never stepped
            self._render_thread = threading.Thread(target=self._render_loop, daemon=True,
                                                   name="sim_camera")
        self.clock_pub = (self.create_publisher(Clock, "/clock", 10)
                          if p.publish_clock else None)
        controller = p.controller or CONTROLLERS[self.sim.command]
        self.command_sub = self.create_subscription(
            Float64MultiArray, f"{controller}/commands", self.command_callback, 10,
            callback_group=group)
        self.reset_srv = self.create_service(ResetCondition, "reset", self.reset_callback,
                                             callback_group=group)
        # free-running: a steady-clock timer.  On the node's own clock it would never fire with
        # use_sim_time, since /clock only advances when this very timer publishes it
        self.timer = (None if self.lockstep else
                      self.create_timer(self.dt, self.timer_callback, callback_group=group,
                                        clock=RosClock(clock_type=ClockType.STEADY_TIME)))
        self._msg = JointState()
        self._msg.name = self.joint_names
        self.publish_state()
        if self._render_thread is not None:
            self._render_thread.start()
        cam_info = ""
        if self.cam is not None:
            streams = [self.image_encoding] if self.image_encoding else []
            streams += [self.compressed] if self.compressed else []
            cam_info = (f", camera {self.cam.width}x{self.cam.height} {' + '.join(streams)} "
                        f"{'with every state' if self.camera_rate <= 0 else f'at {self.camera_rate:g} Hz'}")
        self.get_logger().info(f"{'lockstep' if self.lockstep else f'{rate:g} Hz'}, "
                               f"commands on {controller}/commands{cam_info}")

    # --- callbacks ------------------------------------------------------------------------
    def command_callback(self, msg):
        advanced, problem = self.robot.command(msg.data)
        if problem:
            self.get_logger().error(problem)
        if advanced:
            self.publish_state()

    def timer_callback(self):
        advanced, problem = self.robot.tick()
        if problem:
            self.get_logger().error(problem)
        if advanced:
            self.publish_state()

    def reset_callback(self, request, response):
        try:
            x = self.robot.reset(int(request.condition))
            response.success, response.message = True, f"reset to condition {request.condition}"
            response.host = socket.gethostname()
            response.state = convert.pack(x)
            self.publish_state()
        except Exception as err:  # noqa: BLE001 - reported to the caller
            response.success, response.message = False, f"{type(err).__name__}: {err}"
        return response

    def now_msg(self):
        if self.clock_pub is not None:
            return convert.seconds_to_time(self.robot.sim_time, Clock().clock)
        return self.get_clock().now().to_msg()

    def publish_state(self):
        stamp = self.now_msg()
        if self.clock_pub is not None:
            c = Clock()
            c.clock = stamp
            self.clock_pub.publish(c)
        lay = self.sim.layout
        m = self._msg
        x = self.robot.x
        m.header.stamp = stamp
        m.position = x[lay.joint_pos].tolist()
        m.velocity = x[lay.joint_vel].tolist()
        m.effort = self.robot.u.tolist()
        self.joint_pub.publish(m)
        if self.cam is not None and self.camera_rate <= 0:
            self.publish_frame(self.cam.render(self.sim), stamp)
        s = Float64MultiArray()
        s.data = convert.pack(x)
        self.state_pub.publish(s)

    def publish_frame(self, rgb, stamp):
        if not rclpy.ok(context=self.context):
            return
        if self.image_pub is not None:
            self.image_pub.publish(convert.image_to_msg(rgb, Image(), stamp,
                                                        encoding=self.image_encoding))
        if self.compressed_pub is not None:
            self.compressed_pub.publish(convert.compressed_image_to_msg(
                rgb, CompressedImage(), stamp, fmt=self.compressed, quality=self.jpeg_quality))

    def _render_loop(self):
        """The camera at its own rate: snapshot the pose (under the physics lock), render it on
        the kinematic copy outside the lock, publish with the snapshot's stamp."""
        period = 1.0 / self.camera_rate
        rs, lay = self._render_sim, self.sim.layout
        next_t = time.monotonic()
        robot = self.robot
        while not robot.closed:
            with robot.lock:
                if robot.closed:
                    break
                q, target, stamp = robot.x[lay.joint_pos].copy(), self.sim.target.copy(), self.now_msg()
            try:
                rs.pose_scene(q, target)
                self.publish_frame(self.cam.render(rs), stamp)
            except Exception as err:  # noqa: BLE001 - a camera fault must not kill the node
                self.get_logger().error(f"camera frame failed: {err}", throttle_duration_sec=2.0)
            next_t = max(next_t + period, time.monotonic())
            time.sleep(max(0.0, next_t - time.monotonic()))

    def stop(self):
        """On the way out: no more steps, then close PyBullet."""
        if self.timer is not None:
            self.timer.cancel()
        self.robot.stop()
        if self._render_thread is not None:
            self._render_thread.join(timeout=5.0)
            self._render_sim.close()
        self.robot.close()


def main(args=None):
    return run_node(SimNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
