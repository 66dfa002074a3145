"""trainer_node: distils the local controllers into the visuomotor policy (MDGPS S-step) and writes
a checkpoint plus the TorchScript export the samplers and policy_node load.

  action train_policy   gps_msgs/action/TrainPolicy
"""
from __future__ import annotations

import threading

from gps_msgs.action import TrainPolicy
from rclpy.action import ActionServer
from rclpy.node import Node

from gps_ros.policy.distill import STOP_TRAINING
from gps_ros.policy.export import write_policy_checkpoint
from gps_ros.ros import proxies
from gps_ros.ros.common import (ACTION_RESULT_TIMEOUT, ROBOT_PARAMS, declare_parameters,
                                load_experiment_config, robot_from_params, run_node)
from gps_ros.train import build_policy




class TrainerNode(Node):
    def __init__(self):
        super().__init__("trainer_node")
        p = declare_parameters(self, {"config": "", "num_threads": 0,   # 0: torch's default
                                      **ROBOT_PARAMS})
        cfg = load_experiment_config(p.config)
        if cfg.policy is None:
            raise ValueError("trainer_node needs a config with a policy section (MDGPS)")
        n = int(p.num_threads)
        if n > 0:
            import torch

            torch.set_num_threads(n)
        self.policy, _ = build_policy(cfg, robot_from_params(cfg, p, self))
        self.horizon, self.num_conditions = cfg.agent.T, len(cfg.agent.conditions)
        self._busy = threading.Lock()
        self.server = ActionServer(self, TrainPolicy, "train_policy", self.execute_callback,
                                   result_timeout=ACTION_RESULT_TIMEOUT)

    def stop(self):
        """On the way out: a running S-step stops at its next gradient step and answers its goal
        (aborted) before the action server goes away."""
        STOP_TRAINING.set()
        if self._busy.acquire(timeout=10.0):
            self._busy.release()

    def execute_callback(self, goal_handle):
        with self._busy:
            return self._execute(goal_handle)

    def _execute(self, goal_handle):
        goal = goal_handle.request
        self.get_logger().info(f"S-step {goal.iteration}: {len(goal.trajectories)} trials")

        def feedback(step, total, loss):
            fb = TrainPolicy.Feedback()
            fb.step, fb.total_steps, fb.loss = step, total, float(loss)
            goal_handle.publish_feedback(fb)

        result = proxies.handle_train_policy(self.policy, goal, TrainPolicy.Result(),
                                             write_policy_checkpoint, feedback,
                                             self.horizon, self.num_conditions)
        if result.success:
            goal_handle.succeed()
        else:
            self.get_logger().error(result.message)
            goal_handle.abort()
        return result


def main(args=None):
    return run_node(TrainerNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())
