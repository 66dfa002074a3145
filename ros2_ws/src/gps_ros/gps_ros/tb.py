"""TensorBoard scalars, written synchronously and crash-safely (no torch, no TensorFlow).

Records are TensorBoard event files (TFRecord framing of ``Event`` protobufs; the protobuf classes
and the masked CRC-32C come from the small ``tensorboardX`` package).  Unlike tensorboardX's own
``SummaryWriter``, which queues events for a background thread, :class:`ScalarWriter` writes each
iteration's events with one write on an ``O_APPEND`` file and fsyncs it
(:func:`gps_ros.atomic.append_fsync`), so when the iteration's ``state.pkl`` is committed its
scalars are on disk, and a ``kill -9`` can only lose whole iterations that will be redone.  A
resumed run opens a new event file that starts with a ``SessionLog.START`` at the resume step,
which makes TensorBoard purge the scalars of the redone iterations from the earlier files
(TensorBoard's documented restart protocol).

Tags written per iteration by :func:`metrics_scalars`::

    cost/mean, cost/c00 ..   final_distance_cm/max, final_distance_cm/c00 ..   kl/c00 ..
    epsilon/c00 ..   eta/c00 ..   step_mult/c00 ..   trials, discarded   time_s/sample ..
    (and any other numeric metric, e.g. a distillation loss, under its own name)
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from .atomic import append_fsync

log = logging.getLogger(__name__)

_PER_CONDITION = {"final_distance": ("final_distance_cm", 100.0), "cost_per_condition": ("cost", 1.0),
                  "kl": ("kl", 1.0), "epsilon": ("epsilon", 1.0), "eta": ("eta", 1.0),
                  "step_mult": ("step_mult", 1.0), "insertion_depth": ("insertion_depth_cm", 100.0),
                  "inserted": ("inserted", 1.0)}


def available() -> bool:
    try:
        import tensorboardX.proto.event_pb2  # noqa: F401
        return True
    except ImportError:
        return False


def metrics_scalars(row: dict) -> Dict[str, float]:
    """TensorBoard tags -> values for one metrics.jsonl row."""
    out: Dict[str, float] = {}
    for key, value in row.items():
        if key in ("iteration",):
            continue
        if key in _PER_CONDITION and isinstance(value, list):
            tag, scale = _PER_CONDITION[key]
            for m, v in enumerate(value):
                out[f"{tag}/c{m:02d}"] = scale * float(v)
            if key == "final_distance" and value:
                out["final_distance_cm/max"] = 100.0 * max(value)
                out["final_distance_cm/mean"] = 100.0 * sum(value) / len(value)
        elif key == "cost":
            out["cost/mean"] = float(value)
        elif key == "time" and isinstance(value, dict):
            for k, v in value.items():
                out[f"time_s/{k}"] = float(v)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, (int, float)):
            out[key] = float(value)
        elif isinstance(value, list) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            for m, v in enumerate(value):
                out[f"{key}/c{m:02d}"] = float(v)
    return out


def _record(data: bytes) -> bytes:
    from tensorboardX.record_writer import masked_crc32c

    header = struct.pack("Q", len(data))
    return header + struct.pack("I", masked_crc32c(header)) + data + struct.pack("I", masked_crc32c(data))


class ScalarWriter:
    """Append-only TensorBoard event file in ``logdir``; one file per writer (per process run).

    Args:
        logdir: directory of the event files (created if needed).

        purge_step: if given (a resumed run), TensorBoard hides the earlier files' events at steps
            >= purge_step.
    """

    def __init__(self, logdir: str | Path, purge_step: Optional[int] = None):
        from tensorboardX.proto import event_pb2

        self._pb = event_pb2
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{time.monotonic_ns() % 10**9}")
        self.path = self.logdir / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        first = [event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")]
        if purge_step is not None:
            first.append(event_pb2.Event(wall_time=time.time(), step=int(purge_step),
                                         session_log=event_pb2.SessionLog(
                                             status=event_pb2.SessionLog.START)))
        self._write(first)

    def _write(self, events: List) -> None:
        append_fsync(self._fd, b"".join(_record(e.SerializeToString()) for e in events))

    def add_scalars(self, step: int, scalars: Dict[str, float]) -> None:
        """All ``scalars`` at ``step``, written and fsynced before returning."""
        from tensorboardX.proto.summary_pb2 import Summary

        now = time.time()
        values = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()]
        self._write([self._pb.Event(wall_time=now, step=int(step), summary=Summary(value=values))])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# --- reading (tests, the fault-injection check, quick looks without TensorBoard) -------------------
def iter_records(path: str | Path) -> Iterator[bytes]:
    """The payloads of a TFRecord file; raises ValueError on a bad CRC or a truncated record."""
    from tensorboardX.record_writer import masked_crc32c

    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{path}: truncated record header at byte {pos}")
        header = data[pos:pos + 8]
        (n,) = struct.unpack("Q", header)
        (hcrc,) = struct.unpack("I", data[pos + 8:pos + 12])
        if hcrc != masked_crc32c(header):
            raise ValueError(f"{path}: bad header CRC at byte {pos}")
        if pos + 12 + n + 4 > len(data):
            raise ValueError(f"{path}: truncated record at byte {pos}")
        payload = data[pos + 12:pos + 12 + n]
        (dcrc,) = struct.unpack("I", data[pos + 12 + n:pos + 16 + n])
        if dcrc != masked_crc32c(payload):
            raise ValueError(f"{path}: bad data CRC at byte {pos}")
        yield payload
        pos += 16 + n


def read_events(path: str | Path) -> List:
    from tensorboardX.proto import event_pb2

    out = []
    for payload in iter_records(path):
        ev = event_pb2.Event()
        ev.ParseFromString(payload)
        out.append(ev)
    return out


def read_scalars(logdir: str | Path) -> Dict[str, List[Tuple[int, float]]]:
    """tag -> [(step, value)] over all event files of ``logdir`` in file order, applying
    TensorBoard's purge rule (a ``SessionLog.START`` at step s drops earlier events at >= s)."""
    from tensorboardX.proto import event_pb2

    out: Dict[str, List[Tuple[int, float]]] = {}
    files = [read_events(f) for f in Path(logdir).glob("events.out.tfevents.*")]
    files.sort(key=lambda evs: evs[0].wall_time if evs else 0.0)
    for events in files:
        for ev in events:
            if ev.HasField("session_log") and ev.session_log.status == event_pb2.SessionLog.START:
                for tag in out:
                    out[tag] = [(s, v) for s, v in out[tag] if s < ev.step]
            if ev.HasField("summary"):
                for v in ev.summary.value:
                    out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
    return out
