"""dynamics_node: fits per-time-step linear-Gaussian dynamics (the prior kept across calls).

  srv fit_dynamics   gps_msgs/srv/FitDynamics

With ``dynamics.type: model_prior`` the prior is the robot's model: the node builds it from the
URDF of its ``robot_description`` parameter or topic (:data:`~gps_ros.ros.common.ROBOT_PARAMS`),
as the coordinator does, unless ``dynamics.model_urdf`` names another.
"""
from __future__ import annotations

from gps_msgs.srv import FitDynamics
from rclpy.node import Node

from gps_ros.ros import convert, proxies
from gps_ros.ros.common import (ROBOT_PARAMS, declare_parameters, load_experiment_config,
                                robot_from_params, run_node)
from gps_ros.train import build_fitter

PARAMS = {"config": "", **ROBOT_PARAMS}


class DynamicsNode(Node):
    def __init__(self):
        super().__init__("dynamics_node")
        p = declare_parameters(self, PARAMS)
        cfg = load_experiment_config(p.config)
        task = urdf = None
        if cfg.dynamics.type == "model_prior" and cfg.dynamics.model_urdf is None:
            task = robot_from_params(cfg, p, self)
            urdf = task.description.urdf        # what the model is rebuilt from (pickled state)
        self.fitter = build_fitter(cfg, task, urdf=urdf)
        self.types = convert.ros_types()
        self.horizon, self.num_conditions = cfg.agent.T, len(cfg.agent.conditions)
        self.srv = self.create_service(FitDynamics, "fit_dynamics", self.fit_callback)

    def fit_callback(self, request, response):
        self.get_logger().info(f"fitting {request.num_conditions} conditions on "
                               f"{len(request.trajectories)} trials")
        return proxies.handle_fit_dynamics(self.fitter, request, response, self.types,
                                           self.horizon, self.num_conditions)


def main(args=None):
    return run_node(DynamicsNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
