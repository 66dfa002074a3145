"""SROS2 (DDS Security) for the gps_ros graphs: enclaves, the shipped policy, the keystore.

Every node of ``train.launch.py``, ``deploy.launch.py`` and ``sim.launch.py`` runs in the enclave
``/gps_ros/<executable>`` (:func:`enclave_of`); ``config/ros/sros2_policy.xml`` allows each
exactly the topics, services and actions it uses, and two enclaves for people: ``operator``
(enable the policy, e-stop and its reset, confirm a condition, watch) and ``viewer`` (watch).
With ``ROS_SECURITY_ENABLE=true ROS_SECURITY_STRATEGY=Enforce`` a participant without a
certificate of the keystore's CA is not let into the graph, and an enclave cannot publish, read,
call or serve what its signed permissions do not name.

``ros2 run gps_ros create_keystore DIR`` (:func:`main`) makes the keystore with SROS2's
``ros2 security generate_artifacts``; the launch argument ``keystore:=DIR`` runs a graph secured
(:func:`gps_ros.launch_plan.security_env`).  The helpers here need no ROS (tested in CI); the
secured launch test is ``tests/test_launch_security.py``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

ENCLAVE_ROOT = "/gps_ros"
POLICY = "config/ros/sros2_policy.xml"
#: what SROS2 puts in each enclave's directory (a participant needs all of them)
ENCLAVE_FILES = ("cert.pem", "key.pem", "identity_ca.cert.pem", "permissions_ca.cert.pem",
                 "governance.p7s", "permissions.p7s")


def enclave_of(executable: str) -> str:
    """The enclave a node of the package runs in: ``/gps_ros/<executable>``."""
    return f"{ENCLAVE_ROOT}/{executable}"


def policy_enclaves(policy_file: str | Path) -> List[str]:
    """The enclave paths an SROS2 policy file defines, in file order."""
    root = ET.parse(str(policy_file)).getroot()
    return [e.get("path", "") for e in root.iter("enclave")]


def missing_enclaves(keystore: str | Path, enclaves: Iterable[str]) -> List[str]:
    """The enclaves of ``enclaves`` that ``keystore`` lacks (or has without all of
    :data:`ENCLAVE_FILES`)."""
    base = Path(keystore) / "enclaves"
    return [e for e in enclaves
            if not all((base / e.strip("/") / f).is_file() for f in ENCLAVE_FILES)]


def keystore_error(keystore: str, enclaves: Sequence[str]) -> Optional[str]:
    """Why ``keystore`` cannot secure nodes in ``enclaves`` (one line), or None."""
    if not Path(keystore).is_dir():
        return (f"keystore {keystore} does not exist: create it with "
                f"`ros2 run gps_ros create_keystore {keystore}`")
    missing = missing_enclaves(keystore, enclaves)
    if missing:
        return (f"keystore {keystore} has no enclave {', '.join(missing)}: recreate it with "
                f"`ros2 run gps_ros create_keystore {keystore}`")
    return None


def _default_policy() -> Path:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("gps_ros")) / POLICY
    except Exception:  # noqa: BLE001 - not installed with colcon: the source tree's
        return Path(__file__).resolve().parents[1] / POLICY


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``create_keystore DIR``: the SROS2 keystore of the gps_ros graphs (see the module doc)."""
    ap = argparse.ArgumentParser(
        prog="create_keystore",
        description="Create (or renew) the SROS2 keystore of the gps_ros graphs: a CA, one "
                    "enclave per node and for the operator and viewer, each with the signed "
                    "permissions of the shipped policy, for the current ROS_DOMAIN_ID.")
    ap.add_argument("keystore", help="keystore directory (created if missing)")
    ap.add_argument("--policy", default=None, help=f"SROS2 policy file (default: the package's "
                                                   f"{POLICY})")
    args = ap.parse_args(argv)
    policy = Path(args.policy) if args.policy else _default_policy()
    if not policy.is_file():
        print(f"create_keystore: no policy file {policy}", file=sys.stderr)
        return 2
    ros2 = shutil.which("ros2")
    if ros2 is None:
        print("create_keystore: the ros2 command is not on PATH (source your ROS 2 setup, with "
              "sros2 installed)", file=sys.stderr)
        return 2
    keystore = Path(args.keystore).expanduser().resolve()
    domain = os.environ.get("ROS_DOMAIN_ID", "0") or "0"
    proc = subprocess.run([ros2, "security", "generate_artifacts", "-k", str(keystore),
                           "-p", str(policy)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"create_keystore: ros2 security generate_artifacts failed:\n{proc.stdout}"
              f"{proc.stderr}", file=sys.stderr)
        return 1
    private = keystore / "private"
    if private.is_dir():
        private.chmod(0o700)          # the CA keys: whoever holds them can mint enclaves
    enclaves = policy_enclaves(policy)
    err = keystore_error(str(keystore), enclaves)
    if err:
        print(f"create_keystore: {err}", file=sys.stderr)
        return 1
    print(f"keystore {keystore} for ROS_DOMAIN_ID={domain}: enclaves {', '.join(enclaves)}\n"
          f"run a graph secured:  ros2 launch gps_ros train.launch.py keystore:={keystore}\n"
          f"or export ROS_SECURITY_KEYSTORE={keystore} ROS_SECURITY_ENABLE=true "
          f"ROS_SECURITY_STRATEGY=Enforce\n"
          f"the operator:  ROS_SECURITY_ENCLAVE_OVERRIDE={ENCLAVE_ROOT}/operator ros2 service call "
          f"/policy_node/enable std_srvs/srv/SetBool \"{{data: true}}\"\n"
          f"keep {private} private: its keys sign new enclaves")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
