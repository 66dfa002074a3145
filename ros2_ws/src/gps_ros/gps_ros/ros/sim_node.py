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

import numpy as np

from gps_ros.ros.common import DEFAULT_JOINTS, load_experiment_config, spin_node

_CLASS = None


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.srv import ResetCondition
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    from gps_ros.ros import convert
    from gps_ros.agents.sim import build_sim

    class SimNode(Node):
        def __init__(self):
            super().__init__("sim_node")
            self.declare_parameter("config", "")
            self.declare_parameter("controller", "effort_controller")
            self.declare_parameter("joint_names", DEFAULT_JOINTS)
            self.declare_parameter("lockstep", True)
            self.declare_parameter("rate_hz", 0.0)           # 0: the config's control_rate_hz
            self.declare_parameter("command_timeout", 0.2)
            self.declare_parameter("publish_clock", False)
            self.declare_parameter("initial_condition", 0)
            cfg = load_experiment_config(self.get_parameter("config").value)
            self.sim, cam = build_sim(cfg.agent)
            rate = self.get_parameter("rate_hz").value or cfg.agent.control_rate_hz
            self.dt = 1.0 / rate if self.get_parameter("rate_hz").value else self.sim.dt
            self.joint_names = list(self.get_parameter("joint_names").value)
            self.lockstep = bool(self.get_parameter("lockstep").value)
            self.command_timeout = float(self.get_parameter("command_timeout").value)
            self.sim_time = 0.0
            self.x = self.sim.reset(int(self.get_parameter("initial_condition").value))
            self.u = np.zeros(self.sim.dU)
            self.u_stamp = -math.inf
            self.camera = (lambda: cam.render(self.sim)) if cam is not None else None

            group = MutuallyExclusiveCallbackGroup()        # physics is single-threaded
            self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
            self.state_pub = self.create_publisher(Float64MultiArray, "gps_state", 10)
            self.image_pub = (self.create_publisher(Image, "camera/image_raw", 10)
                              if self.camera is not None else None)
            self.clock_pub = (self.create_publisher(Clock, "/clock", 10)
                              if self.get_parameter("publish_clock").value else None)
            controller = self.get_parameter("controller").value
            self.command_sub = self.create_subscription(
                Float64MultiArray, f"{controller}/commands", self.command_callback, 10,
                callback_group=group)
            self.reset_srv = self.create_service(ResetCondition, "reset", self.reset_callback,
                                                 callback_group=group)
            self.timer = (None if self.lockstep else
                          self.create_timer(self.dt, self.timer_callback, callback_group=group))
            self._msg = JointState()
            self._msg.name = self.joint_names
            self._convert = convert
            self.publish_state()
            self.get_logger().info(f"sim_node: {'lockstep' if self.lockstep else f'{rate:g} Hz'}, "
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
            try:
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

        def close(self):
            self.sim.close()

    _CLASS = SimNode
    return SimNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=2)


if __name__ == "__main__":
    main()
