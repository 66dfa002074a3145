"""Blocking transports over rclpy clients, for the proxy stages (:mod:`gps_ros.ros.proxies`).

They are called from worker threads while the node is spun by a (multi-threaded) executor in
another thread; each call sends asynchronously and waits on a :class:`threading.Event` set by the
future's done-callback.  rclpy is imported inside the functions only.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from gps_ros.ros.common import check_stop


def wait_future(future, timeout: Optional[float], what: str):
    """Block until an rclpy Future is done (the executor runs in another thread)."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    while not done.wait(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))):
        check_stop()                       # Ctrl-C reaches a coordinator waiting here
        if deadline is not None and time.monotonic() >= deadline:
            future.cancel()
            raise TimeoutError(f"{what}: no answer within {timeout} s")
    exc = future.exception()
    if exc is not None:
        raise RuntimeError(f"{what} failed: {exc}") from exc
    return future.result()


class ServiceTransport:
    """request -> response over a service client (``node.create_client``)."""

    def __init__(self, node, srv_type, name: str, timeout: Optional[float] = None,
                 wait_for_server: float = 30.0, callback_group=None) -> None:
        self.name = name
        self.timeout = timeout
        self.client = node.create_client(srv_type, name, callback_group=callback_group)
        if not self.client.wait_for_service(timeout_sec=wait_for_server):
            raise RuntimeError(f"service {name} not available after {wait_for_server} s")

    def __call__(self, request):
        return wait_future(self.client.call_async(request), self.timeout, f"service {self.name}")


class ActionTransport:
    """goal -> result over an action client; a goal the server rejects or aborts raises."""

    def __init__(self, node, action_type, name: str, timeout: Optional[float] = None,
                 wait_for_server: float = 30.0, feedback: Optional[Callable] = None,
                 accept_canceled: bool = True, callback_group=None) -> None:
        from rclpy.action import ActionClient

        self.name = name
        self.timeout = timeout
        self.feedback = feedback
        self.accept_canceled = accept_canceled
        self.client = ActionClient(node, action_type, name, callback_group=callback_group)
        if not self.client.wait_for_server(timeout_sec=wait_for_server):
            raise RuntimeError(f"action server {name} not available after {wait_for_server} s")

    def __call__(self, goal):
        from action_msgs.msg import GoalStatus

        fb = (lambda msg: self.feedback(msg.feedback)) if self.feedback is not None else None
        handle = wait_future(self.client.send_goal_async(goal, feedback_callback=fb), 30.0,
                             f"action {self.name} (sending goal)")
        if not handle.accepted:
            raise RuntimeError(f"action {self.name} rejected the goal")
        res = wait_future(handle.get_result_async(), self.timeout, f"action {self.name}")
        ok = {GoalStatus.STATUS_SUCCEEDED}
        if self.accept_canceled:
            ok.add(GoalStatus.STATUS_CANCELED)   # a canceled trial comes back marked discarded
        if res.status not in ok:
            raise RuntimeError(f"action {self.name} ended with status {res.status}")
        return res.result


def run_trial_transport(node, name: str, timeout: Optional[float] = None, callback_group=None,
                        wait_for_server: float = 30.0):
    """A RunTrial transport returning the result's ``trajectory`` (for :class:`RosSampler`)."""
    from gps_msgs.action import RunTrial

    t = ActionTransport(node, RunTrial, name, timeout, wait_for_server,
                        callback_group=callback_group)
    return lambda goal: t(goal).trajectory
