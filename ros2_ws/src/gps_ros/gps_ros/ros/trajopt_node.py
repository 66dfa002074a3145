"""trajopt_node: the KL-constrained LQR, batched over conditions.

  srv optimize_trajectories   gps_msgs/srv/OptimizeTrajectories
"""
from __future__ import annotations

from gps_ros.ros.common import load_experiment_config, spin_node

_CLASS = None


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.srv import OptimizeTrajectories
    from rclpy.node import Node

    from gps_ros.algorithm import KLConstrainedLQR
    from gps_ros.ros import convert, proxies

    class TrajOptNode(Node):
        def __init__(self):
            super().__init__("trajopt_node")
            self.declare_parameter("config", "")
            cfg = load_experiment_config(self.get_parameter("config").value)
            self.optimizer = KLConstrainedLQR(cfg.algorithm)
            self.types = convert.ros_types()
            self.srv = self.create_service(OptimizeTrajectories, "optimize_trajectories",
                                           self.optimize_callback)

        def optimize_callback(self, request, response):
            return proxies.handle_optimize(self.optimizer, request, response, self.types)

    _CLASS = TrajOptNode
    return TrajOptNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=1)


if __name__ == "__main__":
    main()
