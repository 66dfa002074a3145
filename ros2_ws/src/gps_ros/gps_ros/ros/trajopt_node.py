"""trajopt_node: the KL-constrained LQR, batched over conditions.

  srv optimize_trajectories   gps_msgs/srv/OptimizeTrajectories
"""
from __future__ import annotations

from gps_msgs.srv import OptimizeTrajectories
from rclpy.node import Node

from gps_ros.algorithm import KLConstrainedLQR
from gps_ros.ros import convert, proxies
from gps_ros.ros.common import declare_parameters, load_experiment_config, run_node


class TrajOptNode(Node):
    def __init__(self):
        super().__init__("trajopt_node")
        p = declare_parameters(self, {"config": ""})
        cfg = load_experiment_config(p.config)
        self.optimizer = KLConstrainedLQR(cfg.algorithm)
        self.horizon = cfg.agent.T
        self.types = convert.ros_types()
        self.srv = self.create_service(OptimizeTrajectories, "optimize_trajectories",
                                       self.optimize_callback)

    def optimize_callback(self, request, response):
        return proxies.handle_optimize(self.optimizer, request, response, self.types, self.horizon)


def main(args=None):
    return run_node(TrajOptNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
