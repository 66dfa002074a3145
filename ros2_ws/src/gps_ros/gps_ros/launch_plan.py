"""What the launch files start, as plain data (no ``launch`` import: tested without ROS).

``launch/train.launch.py``, ``deploy.launch.py`` and ``sim.launch.py`` turn launch arguments into
a list of :class:`NodeSpec` here and only wrap each in a ``launch_ros.actions.Node``.  Every rule
that decides *what* runs with *which* parameters and remappings lives in this module:

* the sampler's command topic is always remapped onto the robot's controller, whether the
  controller is given as ``controller:=`` or only in the sampler parameter file (a real robot whose
  commands go nowhere trains on an arm that never moves);
* ``use_sim_time`` is only set where somebody publishes ``/clock``;
* the experiment directory is made absolute (every node runs in the launch's working directory,
  and ``ros2 launch`` prints it at the end);
* MDGPS configs start the trainer_node without being asked (``train_policy:=auto``);
* discovery stays on this host unless the launch is one of several hosts (:func:`discovery_env`);
* every node runs in its SROS2 enclave; ``keystore:=`` runs the graph secured (:func:`security_env`).
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml

PACKAGE = "gps_ros"
SIM_MODES = ("embedded", "lockstep")
ROLES = ("all", "learner", "samplers")
DISCOVERY = ("auto", "localhost", "subnet")
LOCALHOST_XML = "config/ros/cyclonedds_localhost.xml"


class LaunchArgumentError(ValueError):
    """A launch argument that cannot work (one line, names the argument)."""


@dataclass
class NodeSpec:
    """One node of a launch: ``launch_ros.actions.Node(package=package, **fields)``."""

    executable: str
    name: str
    namespace: str = ""
    parameters: List[object] = field(default_factory=list)   # YAML file paths and dicts, in order
    remappings: List[Tuple[str, str]] = field(default_factory=list)
    role: str = ""          # "coordinator": its exit ends the launch
    env: Dict[str, str] = field(default_factory=dict)        # added to the node's environment
    package: str = PACKAGE
    arguments: List[str] = field(default_factory=list)       # command-line arguments
    secured_as: str = ""    # another package's node: its enclave in the shipped policy
    note: str = ""          # shown with the node in the launch log (:func:`describe`)

    @property
    def enclave(self) -> str:
        """The SROS2 enclave the node runs in (used when security is enabled); "" for another
        package's node the shipped policy does not cover."""
        from gps_ros.security import enclave_of

        if self.secured_as:
            return enclave_of(self.secured_as)
        return enclave_of(self.executable) if self.package == PACKAGE else ""

    def param(self, key: str, default=None):
        """The effective value of a parameter given as a dict (later entries win)."""
        value = default
        for p in self.parameters:
            if isinstance(p, dict) and key in p:
                value = p[key]
        return value


def as_bool(value, name: str) -> bool:
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise LaunchArgumentError(f"{name}:={value!r} is not a boolean (true or false)")


def as_int(value, name: str, minimum: Optional[int] = None) -> int:
    return _as_number(value, name, int, "an integer", minimum)


def as_float(value, name: str, minimum: Optional[float] = None) -> float:
    return _as_number(value, name, float, "a number", minimum)


def _as_number(value, name: str, kind, what: str, minimum):
    try:
        v = kind(str(value).strip())
    except ValueError:
        raise LaunchArgumentError(f"{name}:={value!r} is not {what}") from None
    if minimum is not None and v < minimum:
        raise LaunchArgumentError(f"{name}:={v:g} must be >= {minimum:g}")
    return v


def node_params_from_file(path: str, node: str) -> Dict:
    """The ``ros__parameters`` a parameter YAML gives ``node`` (keys ``node``, ``/node``,
    ``/**/node``, ``/**``; later, more specific keys win), or {} if the file has none."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise LaunchArgumentError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise LaunchArgumentError(f"parameter file {path} is not valid YAML: {err}") from None
    out: Dict = {}
    for key in ("/**", "/**/" + node, "/" + node, node):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict):
            out.update(section.get("ros__parameters") or {})
    return out


def _ns(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def resolve_experiment_dir(experiment_dir: str, cfg, cwd: Optional[str] = None) -> str:
    """Absolute experiment directory: as given, else ``runs/NAME-seedS-TIME`` (as gps-ros train)."""
    base = Path(cwd or os.getcwd())
    if experiment_dir:
        p = Path(os.path.expanduser(experiment_dir))
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        p = Path("runs") / f"{cfg.name}-seed{cfg.seed}-{stamp}"
    return str(p if p.is_absolute() else (base / p).resolve())


def train_plan(share: str, config: str, *, use_sim="true", num_samplers="1", namespace: str = "",
               experiment_dir: str = "", robot_description: str = "", sampler_params: str = "",
               controller: str = "", iterations="0", train_policy="auto", sim_mode="embedded",
               prepare_conditions="false", role="all", sampler_indices: str = "",
               samplers: str = "", min_samplers="0", sampler_wait="30.0",
               discovery: str = "auto", keystore: str = "", controller_manager: str = "",
               tf="true", cwd: Optional[str] = None, environ=None) -> List[NodeSpec]:
    """The nodes of ``train.launch.py`` for its launch arguments (strings, as launch gives them).

    ``use_sim``: one simulated robot per sampler, either inside the sampler_node (``sim_mode``
    ``embedded``: the trial runs at in-process speed, joint_states still published) or as a
    sim_node in lockstep over topics (``lockstep``: the same protocol as a real robot).
    Otherwise each sampler talks to the robot's ros2_control topics under ``namespace``.
    ``prepare_conditions``: the coordinator asks the operator to set up each condition.

    Several hosts: ``role`` ``samplers`` starts only this host's samplers (``sampler_indices``,
    e.g. "2,3": ``sampler_2``, ``sampler_3``; default all ``num_samplers``), with their sims;
    ``learner`` only dynamics / trajopt / trainer / coordinator, which uses the samplers named in
    ``samplers`` (comma-separated action names or namespaces, any names; default
    ``/<namespace>/sampler_i/run_trial`` for i < ``num_samplers``), starts once ``min_samplers``
    of them (default all) answer within ``sampler_wait`` seconds and takes the others as they come.
    ``discovery``: :func:`discovery_env` (``auto``: this host only unless ``role`` is one of
    several hosts).  ``keystore``: :func:`security_env`.  ``controller_manager`` (a robot's
    ros2_control): the samplers check there that their command controller is active.
    ``tf``: a one-host simulated training runs robot_state_publisher on the first sampler's
    joint_states, frames unprefixed: the arm moving through its trials under the coordinator's
    markers (which are in the robot base's frame) in rviz2 or Foxglove.
    """
    sim = as_bool(use_sim, "use_sim")
    show_tf = as_bool(tf, "tf")
    n = as_int(num_samplers, "num_samplers", 1)
    iters = as_int(iterations, "iterations", 0)
    prepare = as_bool(prepare_conditions, "prepare_conditions")
    if role not in ROLES:
        raise LaunchArgumentError(f"role:={role!r} must be one of {', '.join(ROLES)}")
    env = discovery_env(share, discovery, multi_host=role != "all", environ=environ)
    indices = parse_indices(sampler_indices, n) if sampler_indices else list(range(n))
    if role != "samplers" and sampler_indices:
        raise LaunchArgumentError("sampler_indices:= is for role:=samplers (this host's samplers)")
    wait = as_float(sampler_wait, "sampler_wait", 0.0)
    if controller_manager and sim:
        raise LaunchArgumentError("controller_manager:= is for a ros2_control arm (use_sim:=false)")
    if sim_mode not in SIM_MODES:
        raise LaunchArgumentError(f"sim_mode:={sim_mode!r} must be one of {', '.join(SIM_MODES)}")
    cfg = _load(config)
    if str(train_policy).strip().lower() == "auto":
        trainer = cfg.algorithm.type == "mdgps"
    else:
        trainer = as_bool(train_policy, "train_policy")
    if cfg.algorithm.type == "mdgps" and not trainer:
        raise LaunchArgumentError("train_policy:=false with an MDGPS config: the coordinator needs "
                                  "the trainer_node")
    exp_dir = resolve_experiment_dir(experiment_dir, cfg, cwd)
    sampler_file = sampler_params or f"{share}/config/ros/sampler.yaml"
    prefix = namespace.strip("/")
    # the controller whose commands topic the samplers publish: the argument, else the parameter
    # file's, else the robot's command interface's -- and that topic is remapped onto the robot's
    # in every case
    ctrl = controller_name(controller, sampler_file, "sampler_node", cfg)
    common = {"config": config}
    # every node that models the robot builds it from the same URDF
    model = {"robot_description": robot_description} if robot_description else {}
    specs: List[NodeSpec] = []
    for i in (indices if role != "learner" else []):
        ns = _ns(prefix, f"sampler_{i}")
        params = {**common, "experiment_dir": exp_dir, "robot_description": robot_description,
                  "controller": ctrl}
        robot = "/" + prefix if prefix else ""
        # agent.robot.urdf robot_description: the topic of the robot's robot_state_publisher, in
        # the robot's namespace (where the learner's nodes read it), not under sampler_i
        remaps: List[Tuple[str, str]] = [("robot_description", f"{robot}/robot_description")]
        if sim and sim_mode == "lockstep":
            specs.append(NodeSpec("sim_node", "sim_node", ns,
                                  [f"{share}/config/ros/sim.yaml",
                                   {**common, "controller": ctrl, "lockstep": True,
                                    "publish_clock": False}]))
            # the sim waits for each command: a late state means a starved process, not a
            # moving arm; the watchdog (2 s here) only catches a sim that died
            params.update(lockstep=True, state_source="gps_state", reset_service="reset",
                          stale_periods=40.0)
        elif sim:
            params.update(lockstep=True, state_source="embedded_sim", reset_service="")
        else:
            if controller_manager:
                params["controller_manager"] = controller_manager
            remaps += [(f"{ctrl}/commands", f"{robot}/{ctrl}/commands"),
                      ("joint_states", f"{robot}/joint_states"),
                      ("camera/image_raw", f"{robot}/camera/image_raw"),
                      ("camera/image_raw/compressed", f"{robot}/camera/image_raw/compressed"),
                      ("e_stop", f"{robot}/e_stop")]
        if role == "samplers":
            # the learner runs elsewhere: send camera frames inline, not as paths on this host
            params["image_transfer"] = "inline"
        specs.append(NodeSpec("sampler_node", "sampler_node", ns, [sampler_file, params], remaps))
        if sim and show_tf and role == "all" and i == indices[0]:
            rsp, _ = state_publisher(cfg, ns, frame_prefix="")
            specs += [rsp] if rsp is not None else []
    if role == "samplers":
        return secured(with_env(specs, env), keystore, environ)
    specs.append(NodeSpec("dynamics_node", "dynamics_node", prefix, [{**common, **model}]))
    specs.append(NodeSpec("trajopt_node", "trajopt_node", prefix, [dict(common)]))
    if trainer:
        specs.append(NodeSpec("trainer_node", "trainer_node", prefix, [{**common, **model}]))
    names = (sampler_action_names(samplers) if samplers else
             ["/" + _ns(prefix, f"sampler_{i}", "run_trial") for i in range(n)])
    need = as_int(min_samplers, "min_samplers", 0) or len(names)
    if need > len(names):
        raise LaunchArgumentError(f"min_samplers:={need} but only {len(names)} samplers are named")
    specs.append(NodeSpec("coordinator_node", "coordinator_node", prefix,
                          [{**common, **model, "experiment_dir": exp_dir, "samplers": names,
                            "iterations": iters, "prepare_conditions": prepare,
                            "min_samplers": need, "server_timeout": wait}],
                          role="coordinator"))
    return secured(with_env(specs, env), keystore, environ)


def parse_indices(text: str, n: int) -> List[int]:
    """ "0,2" or "0-3" (inclusive) -> sampler indices, each < ``n`` (``num_samplers``)."""
    out: List[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise LaunchArgumentError(f"sampler_indices:={text!r}: expected e.g. 0,1 or 2-3") from None
        if a < 0 or b < a:
            raise LaunchArgumentError(f"sampler_indices:={text!r}: bad range {part!r}")
        out.extend(range(a, b + 1))
    if not out:
        raise LaunchArgumentError(f"sampler_indices:={text!r} names no sampler")
    if max(out) >= n:
        raise LaunchArgumentError(f"sampler_indices:={text!r}: index {max(out)} needs "
                                  f"num_samplers:={max(out) + 1} or more (the samplers of all hosts)")
    if len(set(out)) != len(out):
        raise LaunchArgumentError(f"sampler_indices:={text!r} names a sampler twice")
    return out


def sampler_action_names(text: str) -> List[str]:
    """The coordinator's explicit sampler list: comma-separated RunTrial action names
    (``/robot_a/run_trial``) or namespaces (``/robot_a`` -> ``/robot_a/run_trial``)."""
    names = []
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        item = "/" + item.strip("/")
        if not item.endswith("/run_trial"):
            item += "/run_trial"
        names.append(item)
    if not names:
        raise LaunchArgumentError(f"samplers:={text!r} names no sampler")
    if len(set(names)) != len(names):
        raise LaunchArgumentError(f"samplers:={text!r} names a sampler twice")
    return names


def deploy_plan(share: str, checkpoint: str, *, use_sim="true", config: str = "",
                namespace: str = "", robot_description: str = "", policy_params: str = "",
                controller: str = "", image_transport: str = "raw",
                sim_params: str = "", overlay="false", discovery: str = "auto",
                keystore: str = "", environ=None) -> List[NodeSpec]:
    """The nodes of ``deploy.launch.py``: policy_node (+ a free-running sim_node).

    The sim needs the task config the policy was trained with (a vision policy needs the
    camera): ``config`` as given, else the ``config.yaml`` of the run the checkpoint lies in.
    policy_node gets the same config, whose camera section is its image pipeline (crop, resize,
    max frame age), so it sees the pixels the policy was trained on.  ``sim_params``: extra
    parameters of the simulated setup, given to sim_node and policy_node (e.g.
    ``config/ros/camera_640x480.yaml``: a 640x480 bgr8 + JPEG camera and the frame age it needs).
    ``discovery``: :func:`discovery_env` (``auto``: this host only).  ``keystore``:
    :func:`security_env`.
    """
    if image_transport not in ("raw", "compressed"):
        raise LaunchArgumentError(f"image_transport:={image_transport} must be raw or compressed")
    env = discovery_env(share, discovery, environ=environ)
    show = as_bool(overlay, "overlay")
    if not checkpoint:
        raise LaunchArgumentError("checkpoint:= is required (a TorchScript export, e.g. "
                                  "runs/<run>/policy.pt or runs/<run>/policy/policy_0010.pt)")
    ck = Path(os.path.expanduser(checkpoint)).resolve()
    if not ck.is_file():
        raise LaunchArgumentError(f"checkpoint:={checkpoint}: no such file")
    sim = as_bool(use_sim, "use_sim")
    policy_file = policy_params or f"{share}/config/ros/policy.yaml"
    specs: List[NodeSpec] = []
    ns = namespace.strip("/")
    cfg_path = config or run_config_of(str(ck))
    ctrl = controller_name(controller, policy_file, "policy_node", _load(cfg_path))
    if sim:
        if not cfg_path:
            raise LaunchArgumentError(
                f"no config.yaml next to {ck} (or in its parent run directory): give config:= "
                "the task config the policy was trained with (the sim needs its camera and scene)")
        specs.append(NodeSpec("sim_node", "sim_node", ns,
                              [f"{share}/config/ros/sim.yaml",
                               *([_existing(sim_params, "sim_params")] if sim_params else []),
                               {"config": cfg_path, "lockstep": False, "controller": ctrl}]))
        rsp, _ = state_publisher(_load(cfg_path), ns)       # the arm's TF for rviz2 / Foxglove
        specs += [rsp] if rsp is not None else []
    specs.append(NodeSpec("policy_node", "policy_node", ns,
                          [policy_file, *([_existing(sim_params, "sim_params")]
                                          if sim and sim_params else []),
                           {"checkpoint": str(ck), "controller": ctrl,
                                         "config": cfg_path, "image_transport": image_transport,
                                         "publish_overlay": show,
                                         "robot_description": robot_description}]))
    return secured(with_env(specs, env), keystore, environ)


def controller_name(controller: str, param_file: str, node: str, cfg) -> str:
    """The ros2_control controller whose commands a node publishes: the launch argument, else the
    node's parameter file's, else the forward controller of the config's command interface."""
    from gps_ros.robot.actuation import CONTROLLERS

    return (controller or node_params_from_file(param_file, node).get("controller")
            or CONTROLLERS[cfg.agent.robot.command])


def _load(config: str):
    """The experiment config a launch file plans from, validated but its robot not modelled: the
    plan needs only names from it (the algorithm, the command interface), and every node checks
    the robot against its URDF as it starts.  So ``ros2 launch`` needs no Pinocchio in its own
    interpreter (the ROS CLI's Python, where the nodes may run in a virtual environment)."""
    from gps_ros.config import load_config, parse_config
    from gps_ros.paths import default_config_path

    path = Path(config or default_config_path())
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return load_config(path)                 # its one-line error
    return parse_config(data, str(path))


def _existing(path: str, what: str) -> str:
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise LaunchArgumentError(f"{what}:={path}: no such file")
    return str(p.resolve())


def run_config_of(checkpoint: str) -> str:
    """The experiment config of the run a policy export belongs to: ``RUN/config.yaml`` for
    ``RUN/policy.pt`` or ``RUN/policy/policy_NNNN.pt``; "" if there is none."""
    p = Path(checkpoint).resolve()
    for d in (p.parent, p.parent.parent):
        if (d / "config.yaml").is_file():
            return str(d / "config.yaml")
    return ""


def sim_plan(share: str, config: str, *, namespace: str = "", lockstep="false",
             use_sim_time="false", controller: str = "", sim_params: str = "",
             discovery: str = "auto", keystore: str = "", tf="true",
             environ=None) -> List[NodeSpec]:
    """``sim.launch.py``: one sim_node; with ``use_sim_time`` it publishes /clock (from a steady
    timer, so the clock it publishes is not the clock that drives it) and stamps with it.
    ``sim_params``: extra sim_node parameters (e.g. the 640x480 camera of a real robot).
    ``discovery``: :func:`discovery_env` (``auto``: this host only).  ``keystore``:
    :func:`security_env`.  ``tf``: robot_state_publisher beside it (:func:`state_publisher`)."""
    ust = as_bool(use_sim_time, "use_sim_time")
    cfg = _load(config)
    params = {"config": config, "lockstep": as_bool(lockstep, "lockstep"), "publish_clock": ust,
              "controller": controller_name(controller, f"{share}/config/ros/sim.yaml", "sim_node",
                                            cfg)}
    env = discovery_env(share, discovery, environ=environ)
    ns = namespace.strip("/")
    specs = [NodeSpec("sim_node", "sim_node", ns,
                      [f"{share}/config/ros/sim.yaml",
                       *([_existing(sim_params, "sim_params")] if sim_params else []), params])]
    if as_bool(tf, "tf"):
        rsp, _ = state_publisher(cfg, ns)
        specs += [rsp] if rsp is not None else []
    return secured(with_env(specs, env), keystore, environ)


def view_plan(share: str, config: str, *, out_dir: str, discovery: str = "auto",
              keystore: str = "", environ=None) -> List[NodeSpec]:
    """``view.launch.py``: rviz2 on the live view of a training of ``config``
    (:func:`gps_ros.live_view.viewer_configs`: the robot model from the first sampler's
    robot_state_publisher, the coordinator's markers, fixed frame the robot's base), its rviz2
    config written to ``out_dir/gps_ros.rviz`` with a Foxglove layout beside it.  rviz2 runs as
    the node ``viewer``, in the SROS2 ``viewer`` enclave (reads every topic, sends nothing)."""
    from gps_ros.live_view import write_viewer_configs

    cfg = _load(config)
    env = discovery_env(share, discovery, environ=environ)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_viewer_configs(cfg, out / "gps_ros.rviz", out / "foxglove_layout.json")
    specs = [NodeSpec("rviz2", "viewer", "", [], package="rviz2",
                      arguments=["-d", str(out / "gps_ros.rviz")], secured_as="viewer")]
    return secured(with_env(specs, env), keystore, environ)


def discovery_env(share: str, discovery: str, multi_host: bool = False,
                  environ=None) -> Dict[str, str]:
    """The environment every node of a launch gets for ``discovery:=``.

    ``localhost``: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and, unless ``CYCLONEDDS_URI`` is
    set (the user's Cyclone config then decides the interfaces), Cyclone DDS on the loopback
    interface only (:data:`LOCALHOST_XML`).  The range alone only stops multicast discovery: the
    participants still listen on every interface, and a process elsewhere that names this host as
    a peer finds them.  ``subnet``: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``, ``CYCLONEDDS_URI``
    as the user set it (several hosts: ``config/ros/cyclonedds_hosts.xml``).  ``auto``: a
    ``ROS_AUTOMATIC_DISCOVERY_RANGE`` the user exported wins (nothing is added); else ``subnet``
    for a launch that is one host of several (``multi_host``), ``localhost`` otherwise."""
    environ = os.environ if environ is None else environ
    if discovery not in DISCOVERY:
        raise LaunchArgumentError(f"discovery:={discovery!r} must be one of {', '.join(DISCOVERY)}")
    if discovery == "auto":
        if environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
            return {}
        discovery = "subnet" if multi_host else "localhost"
    if discovery == "subnet":
        return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if not environ.get("CYCLONEDDS_URI"):
        env["CYCLONEDDS_URI"] = "file://" + str(Path(share) / LOCALHOST_XML)
    return env


def security_env(keystore: str, specs: Sequence[NodeSpec], environ=None) -> Dict[str, str]:
    """The environment of a graph secured by ``keystore:=`` (SROS2, Enforce), after checking that
    the keystore holds every node's enclave; {} without one.  A graph secured from the
    environment instead (``ROS_SECURITY_ENABLE=true`` and ``ROS_SECURITY_KEYSTORE``) is checked
    too: a node without its enclave would die at start, one by one."""
    from gps_ros.security import keystore_error

    environ = os.environ if environ is None else environ
    enclaves = sorted({s.enclave for s in specs if s.enclave})
    if keystore:
        path = str(Path(os.path.expanduser(keystore)).resolve())
        err = keystore_error(path, enclaves)
        if err:
            raise LaunchArgumentError(f"keystore:={keystore}: {err}")
        return {"ROS_SECURITY_KEYSTORE": path, "ROS_SECURITY_ENABLE": "true",
                "ROS_SECURITY_STRATEGY": "Enforce"}
    if environ.get("ROS_SECURITY_ENABLE", "").lower() == "true":
        path = environ.get("ROS_SECURITY_KEYSTORE", "")
        err = (keystore_error(path, enclaves) if path else
               "ROS_SECURITY_ENABLE=true without ROS_SECURITY_KEYSTORE")
        if err:
            raise LaunchArgumentError(f"security from the environment: {err}")
    return {}


def secured(specs: List[NodeSpec], keystore: str, environ=None) -> List[NodeSpec]:
    """``specs`` in their enclaves, with :func:`security_env` of ``keystore`` added."""
    return with_env(specs, security_env(keystore, specs, environ))


def describe_security(specs: Sequence[NodeSpec], environ=None) -> str:
    """One line: whether the graph runs secured, and with which keystore."""
    environ = os.environ if environ is None else environ
    env = {**environ, **(specs[0].env if specs else {})}
    if env.get("ROS_SECURITY_ENABLE", "").lower() != "true":
        return "security: off (keystore:=DIR runs every node in its SROS2 enclave, see the README)"
    return (f"security: SROS2 {env.get('ROS_SECURITY_STRATEGY', 'Permissive')}, keystore "
            f"{env.get('ROS_SECURITY_KEYSTORE', '?')}, enclaves "
            f"{', '.join(sorted({s.enclave for s in specs if s.enclave}))}")


def describe_discovery(specs: Sequence[NodeSpec], environ=None) -> str:
    """One line: how far the launch's nodes are visible, and how to change it."""
    environ = os.environ if environ is None else environ
    env = {**environ, **(specs[0].env if specs else {})}
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "") or "SUBNET (ROS 2's default)"
    if rng == "LOCALHOST":
        where = ("Cyclone DDS on loopback only" if env.get("CYCLONEDDS_URI", "").endswith(LOCALHOST_XML)
                 else "the interfaces of CYCLONEDDS_URI")
        return f"discovery: LOCALHOST, {where} (discovery:=subnet opens the graph to other hosts)"
    return (f"discovery: {rng}: other hosts on the network see this graph (discovery:=localhost "
            f"keeps it on this host; SROS2 keeps intruders out, see the README)")


def with_env(specs: Sequence[NodeSpec], env: Dict[str, str]) -> List[NodeSpec]:
    """``specs`` with ``env`` added to each node's environment."""
    for s in specs:
        s.env.update(env)
    return list(specs)


def state_publisher(cfg, namespace: str, frame_prefix: Optional[str] = None
                    ) -> Tuple[Optional[NodeSpec], str]:
    """(robot_state_publisher of the config's robot in ``namespace`` -- TF of its links from the
    joint_states there, frames prefixed ``frame_prefix``, by default ``<namespace>/`` when
    namespaced -- or None, one line for the launch log).  None when the URDF cannot be read in
    the launch's own Python (a ``package://`` robot whose package is installed only where the
    nodes run)."""
    from gps_ros.robot.description import mesh_uris
    from gps_ros.task import robot_description

    try:
        desc = robot_description(cfg.agent)
    except Exception as err:  # noqa: BLE001 - TF is a view; the sim runs without it
        return None, (f"no TF: the URDF is not readable here ({type(err).__name__}: "
                      f"{str(err)[:160]})")
    urdf = mesh_uris(desc.urdf)            # the viewers load meshes by URI
    prefix = (f"{namespace}/" if namespace else "") if frame_prefix is None else frame_prefix
    spec = NodeSpec("robot_state_publisher", "robot_state_publisher", namespace,
                    [{"robot_description": urdf, "frame_prefix": prefix}],
                    package="robot_state_publisher", secured_as="robot_state_publisher")
    if desc.missing_meshes:
        spec.note = (f"{len(desc.missing_meshes)} meshes of the URDF are not found in ros2 "
                     f"launch's Python, e.g. {desc.missing_meshes[0]}: viewers show the arm "
                     f"without them")
    return spec, f"TF: robot_state_publisher of {cfg.agent.robot.urdf} on /tf" + (
        f" (frames {prefix}*)" if prefix else "")


def describe_access(specs: Sequence[NodeSpec], environ=None) -> str:
    """Two lines for the launch log: who can see the graph, and whether it is secured."""
    return describe_discovery(specs, environ) + "\n" + describe_security(specs, environ)


def mock_robot_plan(share: str, config: str, out_dir: str, *, namespace: str = "",
                    update_rate="100", inactive="false", discovery: str = "auto",
                    environ=None) -> List[NodeSpec]:
    """``ros2_control_mock.launch.py``: the config's robot on ros2_control's mock hardware --
    robot_state_publisher with its URDF plus a ``<ros2_control>`` tag
    (:func:`gps_ros.robot.ros2_control.mock_hardware_urdf`, starting at condition 0's start
    pose), the controller_manager (``ros2_control_node``) and spawners for the joint state
    broadcaster and the forward controller of the config's command interface (``inactive``:
    configured, not activated), the other interface's and the joint trajectory controller
    (trajectory resets) configured, inactive.  Writes ``robot.urdf`` and
    ``controllers.yaml`` into ``out_dir``."""
    from gps_ros.reset import start_pose
    from gps_ros.robot.actuation import CONTROLLERS
    from gps_ros.robot.ros2_control import (MOCK_INTERFACES, TRAJECTORY_CONTROLLER,
                                            Ros2ControlError, controller_for, controller_params,
                                            mock_hardware_urdf)
    from gps_ros.task import robot_description

    cfg = _load(config)
    rate = as_int(update_rate, "update_rate", 1)
    idle = as_bool(inactive, "inactive")
    try:
        active = controller_for(cfg.agent.robot.command)
        desc = robot_description(cfg.agent)
        urdf = mock_hardware_urdf(desc.urdf, desc.joints, start_pose(cfg.agent, 0))
    except Ros2ControlError as err:
        raise LaunchArgumentError(f"config:={config}: {err}") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "robot.urdf").write_text(urdf)
    params = out / "controllers.yaml"
    params.write_text(yaml.safe_dump(controller_params(desc.joints, rate)))
    ns = namespace.strip("/")
    cm = "/" + _ns(ns, "controller_manager")
    others = [CONTROLLERS[i] for i in MOCK_INTERFACES if CONTROLLERS[i] != active]
    others.append(TRAJECTORY_CONTROLLER)                  # trajectory resets switch to it
    spawn = [NodeSpec("spawner", "", ns, package="controller_manager",
                      arguments=["joint_state_broadcaster", "-c", cm]),
             NodeSpec("spawner", "", ns, package="controller_manager",
                      arguments=[active, "-c", cm, *(["--inactive"] if idle else [])]),
             NodeSpec("spawner", "", ns, package="controller_manager",
                      arguments=[*others, "-c", cm, "--inactive"])]
    specs = [NodeSpec("robot_state_publisher", "robot_state_publisher", ns,
                      [{"robot_description": urdf}], package="robot_state_publisher"),
             NodeSpec("ros2_control_node", "controller_manager", ns, [str(params)],
                      [("~/robot_description", "robot_description")],
                      package="controller_manager"),
             *spawn]
    return with_env(specs, discovery_env(share, discovery, environ=environ))


def describe(specs: Sequence[NodeSpec]) -> str:
    """One line per node (namespace/name: executable), for logs and tests."""
    return "\n".join(f"/{_ns(s.namespace, s.name or s.executable)}: {s.executable}"
                     + (f" {' '.join(s.arguments)}" if s.arguments else "")
                     + (f" ({s.note})" if s.note else "") for s in specs)


def launch_description(args: Sequence[Tuple[str, str, str]], setup: Callable,
                       config: Optional[Tuple[str, str]] = None,
                       required: Sequence[Tuple[str, str]] = ()):
    """The ``LaunchDescription`` of a gps_ros launch file (imports launch: ROS machines only):
    the ``required`` arguments (name, description), ``config`` (the shipped config file it
    defaults to, description) when given, the ``args`` (name, default, description), then
    ``setup(get, share)`` -- ``get(name)`` a launch argument's value, ``share`` the package's share
    directory -- returning the launch's actions."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    share = FindPackageShare(PACKAGE)
    declared = [DeclareLaunchArgument(name, description=doc) for name, doc in required]
    if config is not None:
        declared.append(DeclareLaunchArgument(
            "config", default_value=PathJoinSubstitution([share, "config", config[0]]),
            description=config[1]))
    declared += [DeclareLaunchArgument(name, default_value=default, description=doc)
                 for name, default, doc in args]

    def opaque(context, *_args, **_kwargs):
        return setup(lambda name: LaunchConfiguration(name).perform(context),
                     share.perform(context))
    return LaunchDescription([*declared, OpaqueFunction(function=opaque)])


def to_launch_nodes(specs: Sequence[NodeSpec], output: str = "screen"):
    """``launch_ros.actions.Node`` actions for ``specs`` (imports launch_ros: ROS machines only);
    returns (all nodes, the coordinator's node or None)."""
    from launch_ros.actions import Node

    nodes, coordinator = [], None
    for s in specs:
        node = Node(package=s.package, executable=s.executable, name=s.name or None,
                    namespace=s.namespace or None, output=output, parameters=list(s.parameters),
                    remappings=list(s.remappings), additional_env=dict(s.env) or None,
                    arguments=list(s.arguments) or None,
                    ros_arguments=["--enclave", s.enclave] if s.enclave else None)
        nodes.append(node)
        if s.role == "coordinator":
            coordinator = node
    return nodes, coordinator
