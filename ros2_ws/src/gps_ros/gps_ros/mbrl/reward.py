"""The model-based learners' reward: the task's GPS cost made Markov.

GPS plans with a time-varying cost (the distance terms' ``ramp`` weights the last steps most); a
policy of the state alone needs a reward of the transition alone.  :class:`MarkovReward` takes the
same :class:`~gps_ros.cost.WeightedSumCost` that :func:`gps_ros.task.build_cost` builds and drops
the time: per transition (x, u, x')::

    r = −( Σ_action terms  w · ½ Σ_i w_i (u − C x)_i²
         + Σ_state terms   w · (½ l2 s + l1 √(α + s)),  s = Σ_j (wp_j (x'_j − target_j))² )

i.e. every term at ramp weight 1 (no final multiplier), the state terms on the state reached.  The
reward is known, as the cost is to GPS: the learners model the dynamics only.  torch, batched and
differentiable (BPTT backpropagates through it).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from ..cost import ActionCost, StateCost, WeightedSumCost


class MarkovReward:
    def __init__(self, cost: WeightedSumCost):
        self.action_terms: List[Tuple[float, torch.Tensor, object]] = []
        self.state_terms: List[tuple] = []
        for c, w in zip(cost.costs, cost.weights):
            if float(w) == 0.0:
                continue
            if isinstance(c, ActionCost):
                C = None if c.reference is None else torch.as_tensor(c.reference, dtype=torch.float32)
                self.action_terms.append((float(w), torch.as_tensor(c.weights, dtype=torch.float32), C))
            elif isinstance(c, StateCost):
                if c.target.ndim != 1:
                    raise ValueError("a time-varying cost target has no Markov reward")
                self.state_terms.append((float(w), torch.as_tensor(c.indices),
                                         torch.as_tensor(c.target, dtype=torch.float32),
                                         torch.as_tensor(c.wp, dtype=torch.float32),
                                         c.l1, c.l2, c.alpha))
            else:
                raise ValueError(f"no Markov reward for cost term {type(c).__name__}")

    def __call__(self, x, u, xn):
        """r (B,) for torch x (B, dX), u (B, dU), xn (B, dX)."""
        r = torch.zeros(x.shape[0], dtype=x.dtype)
        for w, wu, C in self.action_terms:
            e = u if C is None else u - x @ C.T.to(x.dtype)
            r = r - w * 0.5 * (wu.to(x.dtype) * e * e).sum(-1)
        for w, idx, tgt, wp, l1, l2, alpha in self.state_terms:
            d = wp.to(x.dtype) * (xn[:, idx] - tgt.to(x.dtype))
            s = (d * d).sum(-1)
            r = r - w * (0.5 * l2 * s + l1 * torch.sqrt(alpha + s))
        return r

    def numpy(self, X: np.ndarray, U: np.ndarray, Xn: np.ndarray) -> np.ndarray:
        """The reward (n,) of numpy transitions."""
        with torch.no_grad():
            return self(*(torch.as_tensor(a, dtype=torch.float64) for a in (X, U, Xn))).numpy()
