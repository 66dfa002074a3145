"""policy_node: deployment.  Runs the exported visuomotor policy at joint rate on camera + joint
state and publishes commands through the same SafetyFilter as the sampler.

::

  sub joint_states            sensor_msgs/JointState (each message, or every ``decimation``-th,
                              triggers one control step)
  sub camera/image_raw        sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8), or
      camera/image_raw/compressed  sensor_msgs/CompressedImage (``image_transport: compressed``),
                              through the training config's ImagePipeline (crop + area resize);
                              a frame older than ``max_image_age`` relative to the joint state
                              holds the arm (counted in ``stale_frames``) until fresh ones arrive
  sub e_stop                  std_msgs/Bool;  srv ~/reset_e_stop  std_srvs/Trigger
  srv ~/enable                std_srvs/SetBool (starts disabled = holding; True runs the policy),
                              e.g. /policy_node/enable
  pub <controller>/commands   std_msgs/Float64MultiArray
  pub ~/overlay               sensor_msgs/Image rgb8 (``publish_overlay``): the frame the policy
                              saw, upscaled ``overlay_scale`` times, with its spatial-softmax
                              feature points (as ``gps-ros eval --video``), for rqt / Foxglove;
                              computed only while someone subscribes

A vision policy without camera frames holds the arm and says so (it never acts blind).
``config``: the experiment config the policy was trained with (its ``agent.camera`` section is the
pipeline; deploy.launch.py passes the run's config.yaml); without it, the centred crop resized to
the checkpoint's image size.
"""
from __future__ import annotations

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from gps_ros.ros import convert
from gps_ros.ros.common import (SAFETY_PARAMS, camera_frame, camera_pipeline, robot_from_params,
                                camera_subscription, declare_parameters, load_experiment_config,
                                run_node, safety_from_node)
from gps_ros.robot.actuation import CONTROLLERS
from gps_ros.ros.deploy import PolicyStep
from gps_ros.ros.trial import TorchScriptPolicyActor

PARAMS = {
    "checkpoint": "",                 # TorchScript export (policy.pt / policy_NNNN.pt)
    "config": "",                     # the training config (robot, camera pipeline); "" -> the
                                      # default config's robot and a centred crop
    "image_transport": "raw",         # raw | compressed
    "max_image_age": 0.0,             # s; 0: the config's agent.camera.max_frame_age (else 0.1)
    "publish_overlay": False,         # ~/overlay: the policy's frame with its feature points
    "overlay_scale": 4,
    "overlay_every": 1,               # every n-th control step
    "controller": "",                 # "": the forward controller of agent.robot.command
    "rate_hz": 20.0,                  # nominal, for the watchdog
    "decimation": 1,
    "enabled": False,
    **SAFETY_PARAMS,
}


class PolicyNode(Node):
    def __init__(self):
        super().__init__("policy_node")
        p = declare_parameters(self, PARAMS, on_live=self.on_live_parameter)
        if not p.checkpoint:
            raise ValueError("policy_node needs the parameter checkpoint (a TorchScript export)")
        cfg = load_experiment_config(p.config)
        task = robot_from_params(cfg, p, self)        # the robot model (robot_description)
        self.joints = list(task.joint_names)
        n = len(self.joints)
        self.actor = TorchScriptPolicyActor(p.checkpoint, np.arange(2 * n))
        if self.actor.joint_idx.max() >= 2 * n:
            raise ValueError(f"{p.checkpoint} reads the full GPS state (a model-based learner's "
                             "policy: EE points relative to a target); policy_node feeds it the "
                             f"{2 * n} joint positions and velocities only, so it cannot run it")
        self.safety = safety_from_node(p, task, float(p.rate_hz))
        camera = cfg.agent.camera if p.config else None
        self.pipeline = camera_pipeline(camera, self.actor.config.get("image_size", (64, 64)),
                                        p.max_image_age, self.safety)
        self.overlay_pub = None
        if p.publish_overlay:
            if not self.actor.has_feature_pixels:
                self.get_logger().warning("publish_overlay: this export has no feature points "
                                          "(a blind policy, or exported before they were): the "
                                          "overlay shows the frame only")
            self.overlay_pub = self.create_publisher(Image, "~/overlay", 2)
            self.overlay_scale = max(1, int(p.overlay_scale))
            self.overlay_every = max(1, int(p.overlay_every))
            self._overlay_n = 0
        self.control = PolicyStep(self.actor, self.safety, self.joints, p.decimation,
                                  bool(p.enabled), warn=self._warn, error=self._error)
        self.command_pub = self.create_publisher(Float64MultiArray, f"{p.controller or CONTROLLERS[task.command]}/commands", 10)
        self.joint_sub = self.create_subscription(JointState, "joint_states", self.joint_state_callback,
                                                  qos_profile_sensor_data)
        self.image_sub = camera_subscription(self, p.image_transport, self.image_callback)
        self.e_stop_sub = self.create_subscription(Bool, "e_stop", self.e_stop_callback, 10)
        self.reset_srv = self.create_service(Trigger, "~/reset_e_stop", self.reset_e_stop_callback)
        self.enable_srv = self.create_service(SetBool, "~/enable", self.enable_callback)
        self.get_logger().info(
            f"{p.checkpoint} -> {self.command_pub.topic_name} "
            f"({'enabled' if self.control.enabled else 'holding until ' + self.enable_srv.srv_name + ' true'})")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def stale_frames(self) -> int:
        return self.control.stale_frames

    def _warn(self, text: str, key: str) -> None:
        # one logging call site per kind: rclpy throttles per call site (and refuses other
        # filter settings at one site), so a stale-frame warning cannot mute a stop
        log = self.get_logger()
        if key == "no_frames":
            log.warning(text.replace("no camera frames", "no camera frames on "
                                     + self.image_sub.topic_name), throttle_duration_sec=2.0)
        elif key == "stale":
            log.warning(text, throttle_duration_sec=1.0)
        else:
            log.warning(text, throttle_duration_sec=1.0)

    def _error(self, text: str, key: str) -> None:
        self.get_logger().error(text, throttle_duration_sec=1.0)

    def image_callback(self, msg):
        frame = camera_frame(self, msg, self.pipeline)
        if frame is not None:
            self.control.on_frame(*frame)

    def joint_state_callback(self, msg):
        out = self.control.on_joint_state(msg, self.now())
        if out is None:
            return
        image = self.control.frame[0] if self.control.frame is not None else None
        if self.overlay_pub is not None and image is not None:
            self.publish_overlay(image, msg.header.stamp)
        self.publish(out.command)

    def publish(self, u):
        """Send a command (None: nothing to send, a position-mode hold before any joint state)."""
        if u is not None:
            self.command_pub.publish(convert.command_to_msg(u, Float64MultiArray()))

    def publish_overlay(self, image, stamp):
        self._overlay_n += 1
        if self._overlay_n % self.overlay_every or not self.overlay_pub.get_subscription_count():
            return
        from gps_ros.overlay import draw_feature_points

        uv = self.actor.feature_pixels(image)
        frame = draw_feature_points(image, uv, scale=self.overlay_scale)
        self.overlay_pub.publish(convert.image_to_msg(frame, Image(), stamp, frame_id="overlay"))

    def on_live_parameter(self, name: str, value) -> None:
        """enabled: as ~/enable; effort_scale / velocity_scale: the safety filter's clamp."""
        if name == "enabled":
            self.get_logger().info(f"policy {self.control.enable(bool(value))} (parameter)")
            return
        self.safety.rescale(**{name: float(value)})
        self.get_logger().warning(f"{name} set to {value:g}: commands clamped to it from now on")

    def enable_callback(self, request, response):
        response.success, response.message = True, self.control.enable(request.data)
        self.get_logger().info(f"policy {response.message}")
        return response

    def e_stop_callback(self, msg):
        if msg.data:
            self.safety.e_stop("e_stop topic")
            self.get_logger().error("E-STOP latched; call ~/reset_e_stop to clear")

    def reset_e_stop_callback(self, request, response):
        self.safety.reset_e_stop()
        response.success, response.message = True, "e-stop reset"
        return response

    def stop(self):
        """On the way out (context still valid): one hold command."""
        self.control.enabled = False
        if rclpy.ok(context=self.context):
            self.publish(self.safety.hold(None))


def main(args=None):
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
