"""coordinator_node: the GPS loop of :mod:`gps_ros.algorithm` (the same class as in-process) over
proxy stages: RunTrial on N namespaced samplers concurrently, fit_dynamics, optimize_trajectories
and (MDGPS) train_policy.  Writes the experiment directory like ``gps-ros train``; resumes from it.
"""
from __future__ import annotations

import threading
from pathlib import Path

from gps_ros.ros.common import load_experiment_config

_CLASS = None


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.action import TrainPolicy
    from gps_msgs.srv import FitDynamics, OptimizeTrajectories
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.node import Node

    from gps_ros.ros import convert, proxies
    from gps_ros.ros.clients import ActionTransport, ServiceTransport, run_trial_transport
    from gps_ros.ros.coordinator import build_ros_algorithm, reattach, sampler_names

    class CoordinatorNode(Node):
        def __init__(self):
            super().__init__("coordinator_node")
            self.declare_parameter("config", "")
            self.declare_parameter("experiment_dir", "")
            self.declare_parameter("num_samplers", 1)
            self.declare_parameter("sampler_prefix", "sampler_")
            self.declare_parameter("iterations", 0)            # 0: the config's
            self.declare_parameter("trial_timeout", 600.0)
            gp = lambda k: self.get_parameter(k).value  # noqa: E731
            self.cfg = load_experiment_config(gp("config"))
            group = ReentrantCallbackGroup()
            timeout = float(gp("trial_timeout"))
            self.run_trial = [run_trial_transport(self, n, timeout, group)
                              for n in sampler_names(int(gp("num_samplers")), gp("sampler_prefix"))]
            self.fit = ServiceTransport(self, FitDynamics, "fit_dynamics", timeout, callback_group=group)
            self.opt = ServiceTransport(self, OptimizeTrajectories, "optimize_trajectories", timeout,
                                        callback_group=group)
            self.train = (ActionTransport(self, TrainPolicy, "train_policy", None, callback_group=group)
                          if self.cfg.algorithm.type == "mdgps" else None)
            self.types, self.srv_types = convert.ros_types(), proxies.ros_service_types()

        def run_training(self):
            from gps_ros.experiment import Experiment
            from gps_ros.sim.panda import PandaReachSim
            from gps_ros.train import _check_state, _restore, default_out_dir, run

            out = Path(self.get_parameter("experiment_dir").value or default_out_dir(self.cfg))
            model = PandaReachSim(self.cfg.agent)          # kinematics for cost / initial controllers
            try:
                algo = build_ros_algorithm(self.cfg, model, self.run_trial, self.fit, self.opt,
                                           self.train, str(out / "policy"), self.types, self.srv_types)
                if (out / "config.yaml").exists():
                    exp = Experiment.open(out)
                    state = exp.load_state()
                    if state is not None:
                        _check_state(algo, state, self.cfg)
                        _restore(algo, state)
                        reattach(algo, self.run_trial, self.fit, self.opt, self.train)
                        self.get_logger().warning(
                            "resumed: the dynamics prior restarts in dynamics_node unless it kept running")
                else:
                    exp = Experiment.create(out, self.cfg)
                iterations = int(self.get_parameter("iterations").value) or self.cfg.iterations
                run(exp, algo, iterations, progress=False,
                    on_iteration=lambda m: self.get_logger().info(
                        f"iteration {m['iteration']}: cost {m['cost']:.3f}, discarded {m['discarded']}"))
                self.get_logger().info(f"training done: {out}")
            finally:
                model.close()

    _CLASS = CoordinatorNode
    return CoordinatorNode


def main(args=None):
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    rclpy.init(args=args)
    node = None
    try:
        node = _define()()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()                  # the loop blocks on futures the executor completes
        node.run_training()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
