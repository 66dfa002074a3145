"""dynamics_node: fits per-time-step linear-Gaussian dynamics (GMM prior kept across calls).

  srv fit_dynamics   gps_msgs/srv/FitDynamics
"""
from __future__ import annotations

from gps_msgs.srv import FitDynamics
from rclpy.node import Node

from gps_ros.ros import convert, proxies
from gps_ros.ros.common import declare_parameters, load_experiment_config, run_node
from gps_ros.train import build_fitter


class DynamicsNode(Node):
    def __init__(self):
        super().__init__("dynamics_node")
        p = declare_parameters(self, {"config": ""})
        self.fitter = build_fitter(load_experiment_config(p.config))
        self.types = convert.ros_types()
        self.srv = self.create_service(FitDynamics, "fit_dynamics", self.fit_callback)

    def fit_callback(self, request, response):
        self.get_logger().info(f"fitting {request.num_conditions} conditions on "
                               f"{len(request.trajectories)} trials")
        return proxies.handle_fit_dynamics(self.fitter, request, response, self.types)


def main(args=None):
    return run_node(DynamicsNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
