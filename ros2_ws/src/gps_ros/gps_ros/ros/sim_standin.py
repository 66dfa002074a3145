"""The simulated robot behind ``sim_node``, without rclpy: what it does with a command, a timer
tick and a reset, so that it runs in CI; the node is its ROS wiring (publishing the state after
each call that changed it).

* A command of the wrong length or not finite is refused: the robot holds (and the caller logs
  the returned reason).
* Lockstep: each accepted command advances the simulation by one control period.
* Free-running: each tick applies the latest command (zero-order hold), or the hold command once
  no command came for ``command_timeout`` s of simulated time.
* Every step and reset happens under one lock (the node's camera thread reads the state under
  it); after :meth:`stop` nothing steps or resets any more.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from gps_ros.ros.validate import check_command


class SimStandIn:
    """Args:
        sim: the simulator (``reset(condition)``, ``step(u)``, ``hold_command()``, ``dU``).
        dt: simulated seconds per control period.
        lockstep: step on each command (True) or on each :meth:`tick` (False).
        command_timeout: free-running: hold after this long without a command (s).
        initial_condition: the condition the arm starts in.
    """

    def __init__(self, sim, dt: float, lockstep: bool, command_timeout: float,
                 initial_condition: int = 0) -> None:
        self.sim, self.dt = sim, float(dt)
        self.lockstep, self.command_timeout = bool(lockstep), float(command_timeout)
        self.lock = threading.Lock()
        self.closed = False
        self.sim_time = 0.0
        self.x = sim.reset(int(initial_condition))
        self.u = sim.hold_command()
        self.u_stamp = -math.inf

    def command(self, data):
        """A command message's data.  Returns (advanced, refusal): whether the simulation
        stepped (lockstep), and the reason a bad command was replaced by the hold (or None)."""
        refusal = check_command(data, self.sim.dU)
        if refusal:
            refusal = f"ignoring bad {refusal}; holding"
            u = self.sim.hold_command()
        else:
            u = np.asarray(data, dtype=np.float64)
        self.u = u
        self.u_stamp = self.sim_time
        if not self.lockstep:
            return False, refusal
        advanced, error = self.advance(u)
        return advanced, refusal or error

    def tick(self):
        """Free-running timer: one period of the latest command, or of the hold once it is older
        than ``command_timeout``.  Returns (advanced, error) as :meth:`advance`."""
        fresh = self.sim_time - self.u_stamp <= self.command_timeout
        return self.advance(self.u if fresh else self.sim.hold_command())

    def advance(self, u):
        """One control period of ``u``.  Returns (advanced, error): False with no error once
        closed, False with the simulator's reason when it refuses the command."""
        with self.lock:
            if self.closed:
                return False, None
            try:
                self.x = self.sim.step(u)
            except ValueError as err:
                return False, f"sim step refused: {err}"
            self.sim_time += self.dt
            return True, None

    def reset(self, condition: int) -> np.ndarray:
        """Reset to a condition (the hold command from then on); raises when closed."""
        with self.lock:
            if self.closed:
                raise RuntimeError("sim_node is shutting down")
            self.x = self.sim.reset(int(condition))
            self.u = self.sim.hold_command()
            return self.x

    def stop(self) -> None:
        """No more steps or resets from now on (the simulator stays open for readers)."""
        with self.lock:
            self.closed = True

    def close(self) -> None:
        """Stop, then close the simulator."""
        self.stop()
        with self.lock:
            self.sim.close()
