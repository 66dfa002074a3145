"""Where the package's data files are: its share directory (``config/``, ``robots/``).

In a source checkout (``pip install -e``) that is ``ros2_ws/src/gps_ros``; installed with colcon,
``share/gps_ros`` (found through the ament index).  The two layouts keep ``config/`` and
``robots/`` side by side, so a config may name a shipped robot relative to itself
(``urdf: ../robots/<name>/<name>.urdf``; the shipped configs say ``package://gps_ros/robots/...``).
"""
from __future__ import annotations

from pathlib import Path

SOURCE_SHARE = Path(__file__).resolve().parents[1]

#: the default task of ``gps-ros`` tools and nodes that are given no config
DEFAULT_CONFIG = ("config", "panda_reach.yaml")


def share_path(*parts: str) -> Path:
    """A file of the package's share directory: the source tree's if it has it, else the
    installed one (ament index); the source tree's path when neither exists."""
    here = SOURCE_SHARE.joinpath(*parts)
    if here.exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("gps_ros")).joinpath(*parts)
        if installed.exists():
            return installed
    except Exception:  # noqa: BLE001 - not on a ROS machine / not installed with colcon
        pass
    return here


def default_config_path() -> Path:
    """``config/panda_reach.yaml``: the default task."""
    return share_path(*DEFAULT_CONFIG)
