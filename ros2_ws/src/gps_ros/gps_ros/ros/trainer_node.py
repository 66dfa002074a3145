"""trainer_node: distils the local controllers into the visuomotor policy (MDGPS S-step) and writes
a checkpoint plus the TorchScript export the samplers and policy_node load.

  action train_policy   gps_msgs/action/TrainPolicy
"""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

from gps_ros.ros.common import load_experiment_config, spin_node

_CLASS = None


def export_policy(policy, checkpoint_dir: str, iteration: int):
    """Write ``policy_NNNN.ckpt`` (state dict + covariance) and ``policy_NNNN.pt`` (TorchScript)
    atomically; returns both paths."""
    import torch

    from gps_ros.policy.export import export_torchscript
    from gps_ros.sample import atomic_write_bytes

    d = Path(checkpoint_dir)
    d.mkdir(parents=True, exist_ok=True)
    net = policy.trainer.net
    buf = io.BytesIO()
    torch.save({"state_dict": net.state_dict(), "config": net.cfg.to_dict(),
                "pol_covar": policy.covariance(), "iteration": iteration}, buf)
    ckpt = d / f"policy_{iteration:04d}.ckpt"
    atomic_write_bytes(ckpt, buf.getvalue())
    exp = export_torchscript(net, d / f"policy_{iteration:04d}.pt")
    return str(ckpt), str(exp)


def _define():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from gps_msgs.action import TrainPolicy
    from rclpy.action import ActionServer
    from rclpy.node import Node

    from gps_ros.ros import proxies
    from gps_ros.sim.panda import StateLayout
    from gps_ros.train import build_policy

    class TrainerNode(Node):
        def __init__(self):
            super().__init__("trainer_node")
            self.declare_parameter("config", "")
            self.declare_parameter("num_threads", 0)       # 0: torch's default
            cfg = load_experiment_config(self.get_parameter("config").value)
            if cfg.policy is None:
                raise ValueError("trainer_node needs a config with a policy section (MDGPS)")
            n = int(self.get_parameter("num_threads").value)
            if n > 0:
                import torch

                torch.set_num_threads(n)
            model = SimpleNamespace(layout=StateLayout.for_points(len(cfg.agent.ee_points)), dU=7)
            self.policy, _ = build_policy(cfg, model)
            self.server = ActionServer(self, TrainPolicy, "train_policy", self.execute_callback)

        def execute_callback(self, goal_handle):
            goal = goal_handle.request
            self.get_logger().info(f"S-step {goal.iteration}: {len(goal.trajectories)} trials")

            def feedback(step, total, loss):
                fb = TrainPolicy.Feedback()
                fb.step, fb.total_steps, fb.loss = step, total, float(loss)
                goal_handle.publish_feedback(fb)

            result = proxies.handle_train_policy(self.policy, goal, TrainPolicy.Result(),
                                                 export_policy, feedback)
            if result.success:
                goal_handle.succeed()
            else:
                self.get_logger().error(result.message)
                goal_handle.abort()
            return result

    _CLASS = TrainerNode
    return TrainerNode


def main(args=None):
    spin_node(lambda: _define()(), args, threads=2)


if __name__ == "__main__":
    main()
