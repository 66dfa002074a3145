"""The operator's part in a run on a real robot (no rclpy here; coordinator_node wires it).

On a real robot a condition is often a physical set-up (where the object lies).  With
``prepare_conditions`` the coordinator stops before the trials of each new condition, says what to
prepare, and goes on when the operator confirms: Enter in the terminal of ``ros2 launch`` (read from
the controlling terminal, ``/dev/tty``, since launch gives its processes no stdin), or a
``std_srvs/Trigger`` call on ``/coordinator_node/continue`` from another terminal, a foot pedal or
a script.  Without a terminal (a service, CI) only the service call continues.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional


class OperatorGate:
    """Waits for the operator before each new condition.

    Args:
        say: logs one line (the prompt and what happened).
        describe: condition -> what to prepare (e.g. "object at x=0.55 y=-0.20").
        service_name: the Trigger service's full name, for the prompt.
        tty: the terminal to read Enter from ("" or None: none).
        should_stop: polled while waiting; True raises KeyboardInterrupt (shutdown).
    """

    def __init__(self, say: Callable[[str], None], describe: Callable[[int], str],
                 service_name: str = "", tty: Optional[str] = "/dev/tty",
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.say, self.describe = say, describe
        self.service_name = service_name
        self.should_stop = should_stop
        self._go = threading.Event()
        self._waiting = threading.Event()
        self._lock = threading.Lock()
        self.current: Optional[int] = None     # the condition the set-up is prepared for
        self.confirmations = []                # (condition, "terminal" | "service")
        self._tty = None
        if tty:
            try:
                self._tty = open(tty, "r", encoding="utf-8", errors="replace")  # noqa: SIM115
            except OSError:
                self._tty = None               # no controlling terminal: the service only
        if self._tty is not None:
            threading.Thread(target=self._read_tty, daemon=True, name="operator_tty").start()

    @property
    def has_terminal(self) -> bool:
        return self._tty is not None

    def _read_tty(self) -> None:
        while True:
            try:
                line = self._tty.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            if self._waiting.is_set():
                self.confirm("terminal")

    def confirm(self, via: str = "service") -> bool:
        """The operator says the set-up is ready; False if nothing was waiting."""
        with self._lock:
            if not self._waiting.is_set():
                return False
            self._waiting.clear()
            self.confirmations.append((self._pending, via))
            self._go.set()
            return True

    @property
    def waiting(self) -> bool:
        return self._waiting.is_set()

    def before_condition(self, condition: int) -> None:
        """Block until the operator confirms ``condition`` is set up (no prompt when the set-up
        already is that condition's)."""
        if condition == self.current:
            return
        with self._lock:
            self._pending = condition
            self._go.clear()
            self._waiting.set()
        how = []
        if self.has_terminal:
            how.append("press Enter here")
        if self.service_name:
            how.append(f"ros2 service call {self.service_name} std_srvs/srv/Trigger")
        self.say(f"OPERATOR: prepare condition {condition}: {self.describe(condition)}; then "
                 f"{' or '.join(how) or 'confirm'}")
        while not self._go.wait(0.2):
            if self.should_stop():
                self._waiting.clear()
                raise KeyboardInterrupt("stopped while waiting for the operator")
        self.current = condition
        self.say(f"condition {condition} confirmed ({self.confirmations[-1][1]}): sampling")


def describe_condition(agent_cfg, condition: int) -> str:
    """What an operator prepares for a condition of a reaching config: the target / object."""
    c = agent_cfg.conditions[condition]
    x, y, z = c.target
    what = "object" if agent_cfg.camera is not None or agent_cfg.scene is not None else "target"
    return f"{what} at x={x:.3f} y={y:.3f} z={z:.3f} m"
