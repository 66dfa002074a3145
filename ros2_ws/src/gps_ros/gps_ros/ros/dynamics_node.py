"""dynamics_node: fits per-time-step linear-Gaussian dynamics (GMM prior kept across calls).

  srv fit_dynamics   gps_msgs/srv/FitDynamics
"""
from __future__ import annotations

from gps_ros.ros.common import load_experiment_config, spin_node

_CLASS = None


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.srv import FitDynamics
    from rclpy.node import Node

    from gps_ros.ros import convert, proxies
    from gps_ros.train import build_fitter

    class DynamicsNode(Node):
        def __init__(self):
            super().__init__("dynamics_node")
            self.declare_parameter("config", "")
            cfg = load_experiment_config(self.get_parameter("config").value)
            self.fitter = build_fitter(cfg)
            self.types = convert.ros_types()
            self.srv = self.create_service(FitDynamics, "fit_dynamics", self.fit_callback)

        def fit_callback(self, request, response):
            self.get_logger().info(f"fitting {request.num_conditions} conditions on "
                                   f"{len(request.trajectories)} trials")
            return proxies.handle_fit_dynamics(self.fitter, request, response, self.types)

    _CLASS = DynamicsNode
    return DynamicsNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=1)


if __name__ == "__main__":
    main()
