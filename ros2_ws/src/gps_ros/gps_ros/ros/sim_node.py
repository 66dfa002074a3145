"""sim_node: the PyBullet Panda standing in for ros2_control hardware + a forward command controller.

Interfaces (relative names, so a namespace puts them under e.g. /sampler_0/):
  pub  joint_states            sensor_msgs/JointState (panda_joint1..7: position, velocity, effort)
  pub  gps_state               std_msgs/Float64MultiArray, the full GPS state vector (q, qd, EE points)
  pub  camera/image_raw        sensor_msgs/Image rgb8 (only if the sim has a camera)
  pub  /clock                  rosgraph_msgs/Clock (when publish_clock, e.g. with use_sim_time)
  sub  <controller>/commands   std_msgs/Float64MultiArray, 7 joint torques (as an effort
                               forward_command_controller)
  srv  reset                   gps_msgs/srv/ResetCondition

``lockstep: true`` (training): one control period is simulated per received command, so a trial
runs as fast as the sampler can compute and equals the in-process one.  ``lockstep: false``: a timer
at ``rate_hz`` applies the latest command (zero-order hold; zero after ``command_timeout``).
"""
from __future__ import annotations

import math
import threading

import numpy as np

import rclpy
from gps_msgs.srv import ResetCondition
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock as RosClock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray

from gps_ros.agents.sim import build_sim
from gps_ros.ros import convert
from gps_ros.ros.common import DEFAULT_JOINTS, declare_parameters, load_experiment_config, run_node

PARAMS = {
    "config": "",
    "controller": "effort_controller",
    "joint_names": DEFAULT_JOINTS,
    "lockstep": True,
    "rate_hz": 0.0,            # 0: the config's control_rate_hz
    "command_timeout": 0.2,
    "publish_clock": False,
    "initial_condition": 0,
}


class SimNode(Node):
    def __init__(self):
        super().__init__("sim_node")
        p = self.p = declare_parameters(self, PARAMS)
        cfg = load_experiment_config(p.config)
        self.sim, cam = build_sim(cfg.agent)
        rate = p.rate_hz or cfg.agent.control_rate_hz
        self.dt = 1.0 / rate if p.rate_hz else self.sim.dt
        self.joint_names = list(p.joint_names)
        self.lockstep = bool(p.lockstep)
        self.command_timeout = float(p.command_timeout)
        self.sim_time = 0.0
        self.x = self.sim.reset(int(p.initial_condition))
        self.u = np.zeros(self.sim.dU)
        self.u_stamp = -math.inf
        self.camera = (lambda: cam.render(self.sim)) if cam is not None else None

        self._physics = threading.Lock()
        self.closed = False
        group = MutuallyExclusiveCallbackGroup()        # physics is single-threaded
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.state_pub = self.create_publisher(Float64MultiArray, "gps_state", 10)
        self.image_pub = (self.create_publisher(Image, "camera/image_raw", 10)
                          if self.camera is not None else None)
        self.clock_pub = (self.create_publisher(Clock, "/clock", 10)
                          if p.publish_clock else None)
        controller = p.controller
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
        self.get_logger().info(f"{'lockstep' if self.lockstep else f'{rate:g} Hz'}, "
                               f"commands on {controller}/commands")

    # --- callbacks ------------------------------------------------------------------------
    def command_callback(self, msg):
        u = np.asarray(msg.data, dtype=np.float64)
        if u.shape != (self.sim.dU,) or not np.isfinite(u).all():
            self.get_logger().error(f"ignoring bad command {list(msg.data)}; holding zero effort")
            u = np.zeros(self.sim.dU)
        self.u = u
        self.u_stamp = self.sim_time
        if self.lockstep:
            self.advance(u)

    def timer_callback(self):
        u = self.u if self.sim_time - self.u_stamp <= self.command_timeout else np.zeros(self.sim.dU)
        self.advance(u)

    def reset_callback(self, request, response):
        with self._physics:
            return self._reset(request, response)

    def _reset(self, request, response):
        try:
            if self.closed:
                raise RuntimeError("sim_node is shutting down")
            self.x = self.sim.reset(int(request.condition))
            self.u = np.zeros(self.sim.dU)
            response.success, response.message = True, f"reset to condition {request.condition}"
            response.state = convert.pack(self.x)
            self.publish_state()
        except Exception as err:  # noqa: BLE001 - reported to the caller
            response.success, response.message = False, f"{type(err).__name__}: {err}"
        return response

    # --- simulation ------------------------------------------------------------------------
    def advance(self, u):
        with self._physics:
            if not self.closed:
                self._advance(u)

    def _advance(self, u):
        try:
            self.x = self.sim.step(u)
        except ValueError as err:
            self.get_logger().error(f"sim step refused: {err}")
            return
        self.sim_time += self.dt
        self.publish_state()

    def now_msg(self):
        if self.clock_pub is not None:
            return convert.seconds_to_time(self.sim_time, Clock().clock)
        return self.get_clock().now().to_msg()

    def publish_state(self):
        stamp = self.now_msg()
        if self.clock_pub is not None:
            c = Clock()
            c.clock = stamp
            self.clock_pub.publish(c)
        lay = self.sim.layout
        m = self._msg
        m.header.stamp = stamp
        m.position = self.x[lay.joint_pos].tolist()
        m.velocity = self.x[lay.joint_vel].tolist()
        m.effort = self.u.tolist()
        self.joint_pub.publish(m)
        if self.image_pub is not None:
            self.image_pub.publish(convert.image_to_msg(self.camera(), Image(), stamp))
        s = Float64MultiArray()
        s.data = convert.pack(self.x)
        self.state_pub.publish(s)

    def stop(self):
        """On the way out: no more steps, then close PyBullet."""
        if self.timer is not None:
            self.timer.cancel()
        with self._physics:
            self.closed = True
            self.sim.close()


def main(args=None):
    return run_node(SimNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
