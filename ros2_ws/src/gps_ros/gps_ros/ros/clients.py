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


class ServerLost(RuntimeError):
    """The server of a pending call disappeared from the graph (its host or process died)."""


def wait_future(future, timeout: Optional[float], what: str,
                alive: Optional[Callable[[], bool]] = None, lost_after: float = 3.0):
    """Block until an rclpy Future is done (the executor runs in another thread).

    ``alive()`` (e.g. the action server is still in the graph) is polled while waiting; gone for
    ``lost_after`` seconds raises :class:`ServerLost` instead of waiting out ``timeout``."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    gone_since = None
    while not done.wait(0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))):
        check_stop()                       # Ctrl-C reaches a coordinator waiting here
        if deadline is not None and time.monotonic() >= deadline:
            future.cancel()
            raise TimeoutError(f"{what}: no answer within {timeout} s")
        if alive is not None:
            if alive():
                gone_since = None
            elif gone_since is None:
                gone_since = time.monotonic()
            elif time.monotonic() - gone_since >= lost_after:
                future.cancel()
                raise ServerLost(f"{what}: the server left the graph {lost_after:g} s ago "
                                 "(its process or host is gone)")
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


def locked_action_client(node, action_type, name: str, callback_group=None):
    """rclpy's ActionClient with one lock between sending a request and handling a response.

    In rclpy (Jazzy included) ``send_goal_async`` registers the request's sequence number only
    after sending it; a response that the executor thread handles in between is dropped ("Ignoring
    unexpected goal response. There may be more than one action server ...") and the future never
    completes (ros2/rclpy#1123).  Seen here with four samplers on two hosts: a trial stalled for
    the 30 s goal timeout.  The lock makes registration and handling mutually exclusive."""
    from rclpy.action import ActionClient

    class LockedActionClient(ActionClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._request_lock = threading.RLock()

        def send_goal_async(self, *args, **kwargs):
            with self._request_lock:
                return super().send_goal_async(*args, **kwargs)

        def _cancel_goal_async(self, *args, **kwargs):
            with self._request_lock:
                return super()._cancel_goal_async(*args, **kwargs)

        def _get_result_async(self, *args, **kwargs):
            with self._request_lock:
                return super()._get_result_async(*args, **kwargs)

        async def execute(self, taken_data):
            with self._request_lock:       # nothing in it waits on another thread
                return await super().execute(taken_data)

    return LockedActionClient(node, action_type, name, callback_group=callback_group)


def result_reason(result) -> str:
    """What an action's result says about its failure: a TrainPolicy ``message`` or a RunTrial
    ``trajectory.reason`` ("" when neither)."""
    return str(getattr(result, "message", "") or
               getattr(getattr(result, "trajectory", None), "reason", "") or "")


class ActionTransport:
    """goal -> result over an action client; a goal the server rejects or aborts raises."""

    def __init__(self, node, action_type, name: str, timeout: Optional[float] = None,
                 wait_for_server: float = 30.0, feedback: Optional[Callable] = None,
                 accept_canceled: bool = True, callback_group=None,
                 lost_after: Optional[float] = None) -> None:
        self.name = name
        self.timeout = timeout
        self.feedback = feedback
        self.accept_canceled = accept_canceled
        self.lost_after = lost_after
        self.client = locked_action_client(node, action_type, name, callback_group)
        if wait_for_server > 0 and not self.client.wait_for_server(timeout_sec=wait_for_server):
            raise RuntimeError(f"action server {name} not available after {wait_for_server} s")

    def ready(self) -> bool:
        """The action server is in the graph now."""
        return bool(self.client.server_is_ready())

    def __call__(self, goal):
        from action_msgs.msg import GoalStatus

        fb = (lambda msg: self.feedback(msg.feedback)) if self.feedback is not None else None
        handle = wait_future(self.client.send_goal_async(goal, feedback_callback=fb), 30.0,
                             f"action {self.name} (sending goal)")
        if not handle.accepted:
            raise RuntimeError(f"action {self.name} rejected the goal")
        res = wait_future(handle.get_result_async(), self.timeout, f"action {self.name}",
                          alive=self.ready if self.lost_after else None,
                          lost_after=self.lost_after or 0.0)
        ok = {GoalStatus.STATUS_SUCCEEDED}
        if self.accept_canceled:
            ok.add(GoalStatus.STATUS_CANCELED)   # a canceled trial comes back marked discarded
        if res.status not in ok:
            why = result_reason(res.result)
            raise RuntimeError(f"action {self.name} ended with status {res.status}"
                               + (f": {why}" if why else ""))
        return res.result


class RunTrialTransport:
    """A sampler for :class:`~gps_ros.ros.proxies.RosSampler`: goal -> the result's
    ``trajectory``; ``ready()`` says whether the sampler is up (it may join late); a sampler that
    leaves the graph mid-trial raises :class:`ServerLost` after ``lost_after`` seconds."""

    def __init__(self, node, name: str, timeout: Optional[float] = None, callback_group=None,
                 wait_for_server: float = 30.0, lost_after: float = 3.0) -> None:
        from gps_msgs.action import RunTrial

        self.name = name
        self._t = ActionTransport(node, RunTrial, name, timeout, wait_for_server,
                                  callback_group=callback_group, lost_after=lost_after)

    def ready(self) -> bool:
        return self._t.ready()

    def __call__(self, goal):
        return self._t(goal).trajectory


def run_trial_transport(node, name: str, timeout: Optional[float] = None, callback_group=None,
                        wait_for_server: float = 30.0, lost_after: float = 3.0):
    """A :class:`RunTrialTransport` (the coordinator's samplers)."""
    return RunTrialTransport(node, name, timeout, callback_group, wait_for_server, lost_after)
