"""coordinator_node: the GPS loop of :mod:`gps_ros.algorithm` (the same class as in-process) over
proxy stages: RunTrial on N samplers concurrently, fit_dynamics, optimize_trajectories and (MDGPS)
train_policy.  Writes the experiment directory like ``gps-ros train``; resumes from it.  The process
exits when training is done (exit code 0) or has failed (1, with the reason in one line);
``train.launch.py`` ends the whole launch with it.

  pub  ~/markers   visualization_msgs/MarkerArray (transient local): the live view of the last
                   iteration -- targets, planned mean end-effector paths, executed paths coloured
                   by cost (gps_ros.live_view)
"""
from __future__ import annotations

from pathlib import Path

from gps_msgs.action import TrainPolicy
from gps_msgs.srv import FitDynamics, OptimizeTrajectories
from std_srvs.srv import Trigger
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from gps_ros.ros import convert, proxies
from gps_ros.ros.clients import ActionTransport, ServiceTransport, run_trial_transport
from gps_ros.ros.common import (ROBOT_PARAMS, check_stop, declare_parameters,
                                load_experiment_config, robot_from_params, run_node)
from gps_ros.ros.coordinator import (build_ros_algorithm, reattach, required_samplers, run_training,
                                     sampler_names, samplers_missing_error, wait_for_samplers)

PARAMS = {
    "config": "",
    "experiment_dir": "",
    "samplers": [""],            # RunTrial action names; [""]: num_samplers x /<prefix>i/run_trial
    "num_samplers": 1,
    "sampler_prefix": "sampler_",
    "iterations": 0,             # 0: the config's
    "trial_timeout": 600.0,
    "server_timeout": 30.0,      # s to wait for min_samplers / each service at start
    "min_samplers": 0,           # start once this many samplers answer (0: all); others join later
    "lost_after": 3.0,           # s a sampler may be missing from the graph mid-trial
    "prepare_conditions": False, # ask the operator to set up each condition before its trials
    **ROBOT_PARAMS,              # the robot model of the cost and the initial controllers
}


class CoordinatorNode(Node):
    def __init__(self):
        super().__init__("coordinator_node")
        p = self.p = declare_parameters(self, PARAMS)
        self.cfg = load_experiment_config(p.config)
        self.task = robot_from_params(self.cfg, p, self)   # kinematics for cost / initial controllers
        group = ReentrantCallbackGroup()
        timeout, wait = float(p.trial_timeout), float(p.server_timeout)
        names = [s for s in p.samplers if s] or sampler_names(int(p.num_samplers), p.sampler_prefix)
        need = required_samplers(int(p.min_samplers), len(names))
        self.get_logger().info(f"waiting up to {wait:g} s for {need} of {len(names)} sampler(s): "
                               f"{', '.join(names)}")
        self.run_trial = [run_trial_transport(self, n, timeout, group, 0.0, float(p.lost_after))
                          for n in names]
        up = wait_for_samplers(self.run_trial, need, wait, check=check_stop)
        missing = [t.name for t in self.run_trial if t.name not in up]
        if len(up) < need:
            raise RuntimeError(samplers_missing_error(up, need, wait, missing))
        if missing:
            self.get_logger().warning(f"starting with {len(up)} of {len(names)} samplers; "
                                      f"{', '.join(missing)} may join later")
        self.fit = ServiceTransport(self, FitDynamics, "fit_dynamics", timeout, wait, group)
        self.opt = ServiceTransport(self, OptimizeTrajectories, "optimize_trajectories", timeout,
                                    wait, group)
        self.train = (ActionTransport(self, TrainPolicy, "train_policy", None, wait,
                                      callback_group=group)
                      if self.cfg.algorithm.type == "mdgps" else None)
        self.types, self.srv_types = convert.ros_types(), proxies.ros_service_types()
        # the live view: markers of the last iteration, kept for late subscribers (rviz2, Foxglove)
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from visualization_msgs.msg import MarkerArray

        self.marker_pub = self.create_publisher(
            MarkerArray, "~/markers", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.gate = None
        if p.prepare_conditions:
            from gps_ros.ros.operator import OperatorGate, describe_condition
            from gps_ros.ros.common import STOP

            srv = self.create_service(Trigger, "~/continue", self.continue_callback,
                                      callback_group=group)
            self.gate = OperatorGate(self.get_logger().warning,
                                     lambda k: describe_condition(self.cfg.agent, k),
                                     srv.srv_name, should_stop=STOP.is_set)

    def continue_callback(self, request, response):
        ok = self.gate.confirm("service")
        response.success = ok
        response.message = ("continuing" if ok else "nothing to confirm: not waiting for the "
                            "operator")
        return response

    def run_training(self) -> int:
        """The GPS loop; returns the exit code (0 done, 1 failed)."""
        from gps_ros.train import default_out_dir

        out = Path(self.p.experiment_dir or default_out_dir(self.cfg))
        return run_training(
            self.cfg, out,
            build=lambda: build_ros_algorithm(self.cfg, self.task, self.run_trial, self.fit,
                                              self.opt, self.train, str(out.resolve() / "policy"),
                                              self.types, self.srv_types),
            reattach_stages=lambda algo: reattach(algo, self.run_trial, self.fit, self.opt,
                                                  self.train, self.types, self.srv_types),
            log=self.get_logger(), iterations=int(self.p.iterations),
            before_condition=self.gate.before_condition if self.gate is not None else None,
            sampler_wait=float(self.p.server_timeout), on_result=self.publish_markers)

    def publish_markers(self, algo, result) -> None:
        """The live view of an iteration (gps_ros.live_view) on ~/markers."""
        from types import SimpleNamespace

        from geometry_msgs.msg import Point
        from visualization_msgs.msg import Marker, MarkerArray

        from gps_ros.live_view import iteration_markers, to_marker_array

        try:
            markers = iteration_markers(self.task, result, algo.cost,
                                        self.task.description.base_link)
        except Exception as err:  # noqa: BLE001 - a view must not stop the training
            self.get_logger().warning(f"no markers for iteration {result.iteration}: {err}")
            return
        types = SimpleNamespace(MarkerArray=MarkerArray, Marker=Marker, Point=Point)
        self.marker_pub.publish(to_marker_array(markers, types,
                                                self.get_clock().now().to_msg()))


def main(args=None):
    return run_node(CoordinatorNode, args, threads=4, work=lambda node: node.run_training())


if __name__ == "__main__":
    raise SystemExit(main())
