"""Typed experiment configuration, loaded from YAML and validated with pydantic.

Every section forbids unknown keys.  A bad file produces one :class:`ConfigError` whose message
is a single line naming the offending key and the expected type, e.g.::

    config error: algorithm.kl_step: Input should be a valid number (got 'big')
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Vec3 = Annotated[List[float], Field(min_length=3, max_length=3)]


class ConfigError(ValueError):
    """A configuration problem, reported as one line."""


class _Strict(BaseModel):
    # no NaN / inf anywhere: a NaN target would otherwise pass and fail only at the first trial
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True,
                              allow_inf_nan=False)


class ConditionConfig(_Strict):
    """One training condition: a reach target and optionally its own start pose."""

    target: Vec3 = Field(description="target position of the end-effector origin, world frame (m)")
    start_joint_positions: Optional[List[float]] = Field(
        default=None, description="arm start pose (rad); defaults to agent.start_joint_positions")


class RegionConfig(_Strict):
    """An axis-aligned box of target positions (world frame, m); held-out evaluation targets are
    drawn uniformly inside it."""

    low: Vec3
    high: Vec3

    @model_validator(mode="after")
    def _check_order(self) -> "RegionConfig":
        if any(a > b for a, b in zip(self.low, self.high)):
            raise ValueError("every entry of low must be <= the matching entry of high")
        return self


class CameraSection(_Strict):
    """A fixed RGB camera (see :class:`gps_ros.sim.camera.CameraConfig`); frames are recorded as
    ``obs["image"]`` (N, T, H, W, 3) uint8 and given to policies that need them."""

    width: int = Field(default=64, ge=8, le=1024)
    height: int = Field(default=64, ge=8, le=1024)
    fov: float = Field(default=50.0, gt=0, lt=180, description="vertical field of view (deg)")
    eye: Vec3 = Field(default=[1.3, 0.8, 1.0], description="camera position (world, m)")
    target: Vec3 = Field(default=[0.3, 0.0, 0.35], description="point the camera looks at")
    renderer: Literal["fast", "tiny"] = Field(
        default="fast", description="fast: capsule ray caster (~1000 frames/s at 64x64); "
        "tiny: PyBullet's TinyRenderer on the full meshes (~50 frames/s, the reference)")
    # how frames of a real camera (ROS topics) become width x height network input:
    # gps_ros.image_pipeline.ImagePipeline, shared by the sampler (recorded) and the policy node
    crop: Optional[List[int]] = Field(
        default=None, min_length=4, max_length=4,
        description="region of interest [x, y, w, h] in the camera topic's pixels, resized (area "
        "interpolation) to width x height; null: the centred region with that aspect ratio")
    max_frame_age: float = Field(
        default=0.1, gt=0, description="s; a camera frame older than this relative to the joint "
        "state is stale: the arm holds (counted) instead of acting on an old picture")


class SceneSection(_Strict):
    """Visual-only scene objects (no effect on the dynamics): the coloured object at each
    condition's target and a table."""

    object_shape: Literal["cube", "sphere"] = "cube"
    object_size: float = Field(default=0.04, gt=0, le=0.3, description="edge / diameter (m)")
    table: bool = True
    table_height: float = Field(default=0.0, description="height of the table top (m)")


class PegConfig(_Strict):
    """Peg insertion (:mod:`gps_ros.sim.peg`): a cylindrical peg fixed in the hand, a block with a
    square hole on a table.  With a peg, each condition's ``target`` is the centre of the hole's
    opening, and the EE points' targets are their positions at full insertion."""

    radius: float = Field(default=0.01, gt=0, le=0.05, description="peg radius (m)")
    tip: float = Field(default=0.10, gt=0, le=0.3, description="tip distance from the grasp point "
                       "along the gripper axis (m); agent.ee_points must include [0, 0, tip]")
    grip: float = Field(default=0.03, ge=0, le=0.1, description="how far the peg reaches into the hand (m)")
    mass: float = Field(default=0.1, gt=0, description="kg")
    clearance: float = Field(default=0.003, gt=0, le=0.05,
                             description="gap between peg and hole wall on each side (m)")
    hole_depth: float = Field(default=0.05, gt=0, le=0.2, description="m")
    chamfer: float = Field(default=0.0, ge=0, le=0.05, description="45° entry chamfer (m): the "
                           "opening is this much wider on each side at the top face, narrowing to "
                           "the hole's side this far below it (0: a sharp edge)")
    floor: float = Field(default=0.01, gt=0, description="thickness of the block under the hole (m)")
    block_size: float = Field(default=0.12, gt=0, le=0.5, description="outer side of the block (m)")
    friction: float = Field(default=0.3, ge=0, description="lateral friction of peg, block and table")
    success_depth: float = Field(default=0.9, gt=0, le=1.0, description="inserted when the tip is "
                                 "below this fraction of the hole depth inside the hole")

    @model_validator(mode="after")
    def _check_chamfer(self) -> "PegConfig":
        if 2 * self.chamfer >= self.hole_depth:
            raise ValueError(f"chamfer {self.chamfer} must be less than half of hole_depth "
                             f"{self.hole_depth} (the bore under it guides the peg)")
        if self.radius + self.clearance + 2 * self.chamfer + 1e-3 >= 0.5 * self.block_size:
            raise ValueError(f"block_size {self.block_size} leaves no wall around the hole and its "
                             f"{self.chamfer} m chamfer")
        return self


class RobotConfig(_Strict):
    """The robot: a URDF and the chain the task controls (:mod:`gps_ros.robot`).  Positions
    (targets, the EE points' world frame) are in ``base_link``'s frame."""

    urdf: str = Field(min_length=1, description="URDF: a path (absolute, relative to the config "
                      "file, or inside pybullet_data), package://pkg/path (ament index), file://, "
                      "or the URDF text; over ROS 2 'robot_description' takes the parameter / topic")
    base_link: Optional[str] = Field(default=None, description="the chain's base, fixed to the "
                                     "URDF's root (default: the root link)")
    ee_link: str = Field(min_length=1, description="the frame agent.ee_points are given in")
    joints: Optional[List[str]] = Field(default=None, min_length=1, description="the controlled "
                                        "joints in command order (default: the movable joints on "
                                        "the chain base_link -> ee_link)")
    command: Literal["effort", "velocity", "position"] = Field(
        default="effort", description="the command interface: joint torques (N m, on top of the "
        "robot's gravity compensation), joint velocities (rad/s) or joint positions (rad)")


#: the robot of an agent section without ``robot`` (the simulated Franka Panda), in the
#: package's share directory
DEFAULT_ROBOT = ("robots", "panda", "panda.yaml")


def _default_robot() -> dict:
    """The agent keys of the :data:`DEFAULT_ROBOT` file, its URDF path made absolute."""
    from gps_ros.paths import share_path

    path = share_path(*DEFAULT_ROBOT)
    data = yaml.safe_load(path.read_text())
    data["robot"]["urdf"] = str((path.parent / data["robot"]["urdf"]).resolve())
    return data


class AgentConfig(_Strict):
    """The task on a PyBullet-simulated robot (``robot``; in every command mode, with the
    robot's gravity compensation): reaching, or with ``peg`` peg insertion (:mod:`gps_ros.sim.peg`).
    Without ``robot`` (configs written before robots were configuration) the robot is the
    simulated Franka Panda of :data:`DEFAULT_ROBOT`."""

    type: Literal["pybullet", "pybullet_panda"] = Field(
        default="pybullet", description="pybullet (pybullet_panda: the same, its former name)")
    robot: RobotConfig
    held_joints: Dict[str, float] = Field(
        default_factory=dict, description="positions of the URDF's movable joints that are not "
        "controlled (a gripper's fingers), held still; default 0 clipped into the joint's limits")
    T: int = Field(default=100, gt=1, description="time steps per trial")
    control_rate_hz: float = Field(default=20.0, gt=0)
    physics_rate_hz: float = Field(default=240.0, gt=0)
    start_joint_positions: List[float] = Field(
        min_length=1, description="the controlled joints' start pose (rad / m), in agent.robot.joints order")
    conditions: List[ConditionConfig] = Field(min_length=1)
    target_region: Optional[RegionConfig] = Field(
        default=None, description="where targets may lie (for held-out evaluation)")
    ee_points: List[Vec3] = Field(
        default=[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.05, 0.0]],
        min_length=1, description="points in the end-effector frame; the first is the EE origin")
    joint_damping: float = Field(default=0.5, ge=0, description="viscous joint damping (N m s/rad)")
    torque_limit_scale: float = Field(default=1.0, gt=0, le=1.0,
                                      description="fraction of the URDF effort limits allowed")
    velocity_limit_scale: float = Field(default=1.0, gt=0, le=1.0, description="fraction of the "
                                        "URDF velocity limits allowed (velocity and position modes)")
    gravity_compensation: bool = True
    gravity_update: Literal["world", "substep", "control"] = Field(
        default="world", description="how gravity compensation is simulated: 'world' switches "
        "gravity off for the arm (exact and cheapest), 'substep' adds inverse-dynamics torques "
        "every physics step, 'control' once per control step (approximate)")
    gui: bool = False
    camera: Optional[CameraSection] = Field(default=None, description="record camera frames")
    scene: Optional[SceneSection] = Field(
        default=None, description="visual scene; defaults to SceneSection() when a camera is set")
    peg: Optional[PegConfig] = Field(default=None, description="peg insertion: conditions' "
                                     "targets are hole openings (see PegConfig)")

    @model_validator(mode="before")
    @classmethod
    def _default_robot(cls, data: Any) -> Any:
        if isinstance(data, dict) and "robot" not in data:
            data = {**{k: v for k, v in _default_robot().items() if k not in data}, **data}
        return data

    @model_validator(mode="after")
    def _check_multiple(self) -> "AgentConfig":
        ratio = self.physics_rate_hz / self.control_rate_hz
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError("physics_rate_hz must be an integer multiple of control_rate_hz")
        if self.peg is not None and not any(
                np.allclose(pt, [0.0, 0.0, self.peg.tip]) for pt in self.ee_points):
            raise ValueError(f"with agent.peg, agent.ee_points must include the peg tip "
                             f"[0, 0, {self.peg.tip:g}] (the success test reads it)")
        return self


class RampConfig(_Strict):
    ramp: Literal["constant", "linear", "quadratic", "final_only"] = "constant"
    final_multiplier: float = Field(default=1.0, ge=0, description="extra weight on the last step")


class EECostConfig(RampConfig):
    """GPS distance penalty on the end-effector points (relative to the target), or on their
    velocities (``on: velocities``, e.g. a final-step term that asks the arm to stop there)."""

    on: Literal["points", "velocities"] = "points"
    weight: float = Field(default=1.0, ge=0)
    wp: Optional[List[float]] = Field(
        default=None, description="per-coordinate weights: 3 values (x, y, z, applied to every EE "
        "point) or 3 per point; e.g. [1, 1, 0] penalises only the horizontal offset (the peg's "
        "alignment over the hole); null: all 1")
    l2: float = Field(default=10.0, ge=0)
    l1: float = Field(default=1.0, ge=0)
    alpha: float = Field(default=1e-5, gt=0)


class ActionCostConfig(_Strict):
    """½ weight Σ_j w_j u_j².  Without ``per_joint``, w_j = 1 / M_jj² (M the joint-space inertia at
    the start pose), i.e. the cost penalises joint accelerations rather than raw torques."""

    weight: float = Field(default=1e-3, ge=0)
    per_joint: Optional[List[float]] = Field(default=None, description="explicit per-joint weights")


class CostConfig(_Strict):
    action: ActionCostConfig = ActionCostConfig()
    ee: List[EECostConfig] = Field(default_factory=lambda: [EECostConfig()], min_length=1,
                                   description="distance-penalty terms on the EE points, summed")


class InitControllerConfig(_Strict):
    """The first trials' controllers, plus Gaussian noise.

    ``pd_hold``: hold the start pose, u = Kp (q0 - q) - Kd qdot.  ``lqr``: a KL-bounded LQR step
    from that PD hold on the task cost, taken on a linear model of the arm at the start pose (its
    inertia and end-effector Jacobian; ``gps_ros.task.linear_model``) instead of fitted dynamics,
    so the first trials already head for the target.
    Gains and variance are in acceleration units and scaled per joint by the joint-space inertia
    M_jj at the start pose: Kp_j = stiffness·M_jj, Kd_j = damping·M_jj, Σ_jj = init_var·M_jj², so
    every joint gets the same closed-loop bandwidth and exploration in rad/s²."""

    type: Literal["pd_hold", "lqr"] = "pd_hold"
    lqr_kl_step: Optional[float] = Field(default=None, gt=0, description="type lqr: the KL bound "
                                         "(per time step) of the step on the model; default algorithm.kl_step")
    lqr_iterations: int = Field(default=5, ge=1, description="type lqr: re-expansions of the cost "
                                "along the model's trajectory")
    stiffness: float = Field(default=10.0, ge=0, description="(rad/s²)/rad")
    damping: float = Field(default=6.0, ge=0, description="(rad/s²)/(rad/s)")
    init_var: float = Field(default=1.0, gt=0, description="noise variance in (rad/s²)²")
    smooth_noise: bool = True
    smooth_sigma: float = Field(default=1.0, ge=0, description="noise smoothing kernel std (steps)")


class PriorConfig(_Strict):
    """The GMM dynamics prior (``dynamics.type: gmm_prior``)."""

    max_clusters: int = Field(default=20, ge=1)
    min_samples_per_cluster: int = Field(default=20, ge=1)
    max_samples: int = Field(default=20, ge=1, description="trials kept in the prior's buffer")
    strength: float = Field(default=1.0, gt=0)
    em_iterations: int = Field(default=100, ge=1)
    cov_prior: float = Field(
        default=10.0, ge=0, description="pseudo-points pulling each cluster's covariance toward the "
        "global one (MAP EM); 0: plain maximum likelihood")


class NNPriorConfig(_Strict):
    """The neural-network dynamics prior (``dynamics.type: nn_prior``; needs torch)."""

    hidden: List[int] = Field(default=[128, 128], min_length=1)
    max_samples: int = Field(default=200, ge=1, description="trials kept in the training buffer")
    strength: float = Field(default=1.0, gt=0, description="pseudo-trials the network counts as")
    steps: int = Field(default=300, ge=0, description="Adam steps per iteration (warm start)")
    first_steps: int = Field(default=1000, ge=1, description="Adam steps of the first fit")
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    zz_floor: float = Field(default=1e-2, ge=0)
    threads: int = Field(default=1, ge=0, description="torch threads while training (0: torch's "
                         "default; more than one thread slows this small network down)")


class GPPriorConfig(_Strict):
    """The Gaussian-process dynamics prior (``dynamics.type: gp_prior``; needs gpytorch)."""

    inducing: int = Field(default=64, ge=1, description="inducing points per state dimension")
    max_samples: int = Field(default=200, ge=1, description="trials kept in the training buffer")
    strength: float = Field(default=1.0, gt=0, description="pseudo-trials the GP counts as")
    steps: int = Field(default=300, ge=0, description="Adam steps on the ELBO per iteration "
                       "(warm start)")
    first_steps: int = Field(default=1000, ge=1, description="Adam steps of the first fit")
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-2, gt=0)
    zz_floor: float = Field(default=1e-2, ge=0)
    threads: int = Field(default=1, ge=0, description="torch threads while training (0: torch's "
                         "default)")


class DynamicsConfig(_Strict):
    """The per-time-step dynamics fit and its prior.  ``gmm_prior``: a GMM over all conditions'
    recent transitions (``prior``); ``nn_prior``: a global network, linearised (``nn``);
    ``gp_prior``: a global sparse Gaussian process, linearised the same way (``gp``);
    ``model_prior``: the robot's rigid-body model (its URDF and command interface) linearised along
    the trials, with the GMM (``prior``) or the network (``nn``) fitted on what the model does not
    explain (``model_residual``; :mod:`gps_ros.dynamics.model_prior`); ``linear_regression``: no
    prior."""

    type: Literal["gmm_prior", "nn_prior", "gp_prior", "model_prior",
                  "linear_regression"] = "gmm_prior"
    regularization: float = Field(default=1e-6, ge=0)
    prior: PriorConfig = PriorConfig()
    nn: NNPriorConfig = NNPriorConfig()
    gp: GPPriorConfig = GPPriorConfig()
    model_residual: Literal["gmm", "nn"] = Field(
        default="gmm", description="model_prior: the learned prior of the model's residual, with "
        "the settings of prior (gmm) or nn (nn, needs torch)")
    model_urdf: Optional[str] = Field(
        default=None, description="model_prior: the URDF of the model (an absolute file name, a "
        "package:// URI or URDF text; default: the robot's, agent.robot.urdf), e.g. one with an "
        "identified payload")

    @model_validator(mode="after")
    def _check_model(self) -> "DynamicsConfig":
        if self.type != "model_prior" and self.model_urdf is not None:
            raise ValueError(f"model_urdf is the URDF of the model_prior; type is {self.type}")
        if self.model_urdf is not None and not self.model_urdf.strip():
            raise ValueError("model_urdf must name a URDF (or be null: the robot's)")
        return self


class AlgorithmConfig(_Strict):
    """``lqr_flm``: local controllers only, each KL-constrained against its predecessor.
    ``mdgps``: KL-constrained against the linearised global policy, which is distilled from the
    controllers every iteration (needs the ``policy`` section).  ``badmm``: LQR-FLM C-steps on the
    cost augmented with λ·(−log π̄), λ adapted by dual ascent (``policy.badmm_*``).

    ``traj_opt`` chooses the C-step of ``lqr_flm``: ``lqr`` the KL-constrained LQR under the fitted
    dynamics; ``pi2`` a model-free PI² step from the samples alone (fixed per-step budget
    ``pi2_kl_step``, no step adaptation); ``pilqr`` the LQR step followed by a PI² step on the cost
    residual the local model does not explain, the LQR step adapted by the residual ratio.  PI² needs
    several samples per condition (>= 2 enforced; about 5 to work, as in the PILQR paper)."""

    type: Literal["lqr_flm", "mdgps", "badmm", "mbpo", "dyna", "bptt"] = "lqr_flm"
    samples_per_condition: int = Field(default=5, ge=1)
    kl_step: float = Field(default=1.0, gt=0, description="base KL step per time step")
    min_step_mult: float = Field(default=0.01, gt=0)
    max_step_mult: float = Field(default=10.0, gt=0)
    kl_tolerance: float = Field(default=0.1, gt=0, lt=1, description="relative KL accuracy of the dual search")
    max_eta_iterations: int = Field(default=40, ge=1)
    min_eta: float = Field(default=1e-8, gt=0)
    max_eta: float = Field(default=1e16, gt=0)
    traj_opt: Literal["lqr", "pi2", "pilqr"] = Field(
        default="lqr", description="the C-step: lqr (LQR-FLM), pi2 (model-free PI² from the "
        "samples), pilqr (LQR + PI² on the model's cost residual); pi2 and pilqr need "
        "samples_per_condition >= 2 (5 recommended: PI² can only reweight what was sampled) and "
        "type lqr_flm")
    pi2_kl_step: float = Field(default=1.0, gt=0, description="pi2/pilqr: per-step budget on "
                               "KL(sample weights || uniform); at most log(samples_per_condition) "
                               "can be spent (1.6 for 5 samples)")
    pi2_covariance_damping: float = Field(default=2.0, gt=0, description="pi2/pilqr: the "
                                          "covariance is scaled by (weighted/unweighted spread)"
                                          "^(1/damping); larger keeps exploration longer")
    pi2_min_cov_scale: float = Field(default=0.5, gt=0, le=1, description="pi2/pilqr: the "
                                     "covariance shrinks at most by this factor per iteration (and "
                                     "grows at most by its inverse): the exploration floor")
    pilqr_res_ratio_dec: float = Field(default=0.2, gt=0, description="pilqr: halve the LQR step "
                                       "when the residual is above this fraction of the cost")
    pilqr_res_ratio_inc: float = Field(default=0.05, ge=0, description="pilqr: double the LQR "
                                       "step when the residual is below this fraction of the cost")

    @model_validator(mode="after")
    def _check_traj_opt(self) -> "AlgorithmConfig":
        if self.traj_opt != "lqr":
            if self.type != "lqr_flm":
                raise ValueError(f"traj_opt {self.traj_opt} needs type lqr_flm: PI² reweights the "
                                 f"samples of the controller it updates, and {self.type} samples "
                                 "the global policy and steps against its linearisation")
            if self.samples_per_condition < 2:
                raise ValueError(f"traj_opt {self.traj_opt} needs samples_per_condition >= 2 (5 "
                                 "recommended): PI² reweights the samples and one sample gives it "
                                 "nothing to compare")
        if self.pilqr_res_ratio_inc >= self.pilqr_res_ratio_dec:
            raise ValueError("pilqr_res_ratio_inc must be < pilqr_res_ratio_dec")
        return self


class PolicyConfig(_Strict):
    """The global visuomotor policy (conv -> spatial softmax -> MLP) and its distillation."""

    use_image: bool = Field(default=True, description="False: the blind ablation (joint state only)")
    state_inputs: Literal["joints", "full"] = Field(
        default="joints", description="joints: joint angles and velocities (the visuomotor policy); "
        "full: the whole privileged state incl. the target (a state-policy reference, no vision)")
    conv_channels: List[int] = Field(default=[32, 32, 16], min_length=1)
    conv_kernels: List[int] = Field(default=[5, 3, 3], min_length=1)
    conv_strides: List[int] = Field(default=[2, 1, 1], min_length=1)
    hidden: List[int] = Field(default=[64, 64])
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=64, ge=1)
    iterations: int = Field(default=500, ge=1, description="gradient steps per S-step")
    weight_decay: float = Field(default=1e-5, ge=0)
    shift: int = Field(default=2, ge=0, description="random image translation (pixels) in the "
                       "S-steps and pretraining; it also blurs the object position the feature "
                       "points can report by up to this many pixels, so 0 where the object is "
                       "needed more precisely (the peg: ~1 cm per pixel)")
    on_policy: bool = True
    renormalise: bool = Field(default=False, description="re-fit the network's input/output "
                              "normalisation to every S-step's data, keeping its function (default:"
                              " the first S-step's, i.e. the initial controllers' actions, which "
                              "can be 10x wider than the converged controllers')")
    warmup_iterations: int = Field(default=0, ge=0, description="iterations whose C-step is "
                                   "taken against the previous controller (LQR-FLM) while the "
                                   "policy is already distilled")
    warmup_kl_step: Optional[float] = Field(default=None, gt=0, description="the warm-up's "
                                            "LQR-FLM kl_step (default: algorithm.kl_step)")
    warmup_max_step_mult: Optional[float] = Field(default=None, gt=0, description="the warm-up's "
                                                  "max_step_mult (default: algorithm's)")
    badmm_lambda0: float = Field(default=1e-2, gt=0, description="badmm: initial weight of "
                                 "the policy term -log pi in the C-step cost")
    badmm_target_kl: float = Field(default=0.5, gt=0, description="badmm: KL(p || policy) per "
                                   "time step the dual ascent aims at")
    replay: int = Field(default=1, ge=1, le=20, description="S-steps whose data each S-step "
                        "trains on (1: this iteration's samples only)")
    aux_weight: float = Field(default=0.0, ge=0, description="weight of regressing the object "
                              "position from the feature points during distillation (0: off)")
    pretrain_frames: int = Field(default=0, ge=0, description="vision pretraining: camera frames "
                                 "of random object positions in agent.target_region (0: off); "
                                 "needs aux_weight > 0, which also keeps them in every S-step; "
                                 "ignored by a blind network (use_image: false)")
    pretrain_iterations: int = Field(default=1000, ge=1, description="Adam steps of the vision "
                                     "pretraining, before the first S-step")
    pretrain_lr: float = Field(default=1e-2, gt=0, description="Adam step size of the vision "
                               "pretraining (larger than lr: the feature points must first find "
                               "the object)")
    pretrain_joint_noise: float = Field(default=0.3, ge=0, description="std (rad) of the random "
                                        "arm poses around the start pose in pretraining frames")
    device: str = Field(default="cpu", pattern=r"^(cpu|auto|cuda(:\d+)?)$",
                        description="where the S-step runs: cpu, cuda[:N], or auto (cuda if "
                        "available); sampling always runs the network on the CPU")
    linearization: Literal["regression", "jacobian"] = Field(
        default="regression", description="how the C-step linearises the policy: per-t regression "
        "on the samples with the GMM policy prior (GPS), or the network's own state Jacobian")
    prior: PriorConfig = PriorConfig()

    @model_validator(mode="after")
    def _check_layers(self) -> "PolicyConfig":
        if not len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides):
            raise ValueError("conv_channels, conv_kernels and conv_strides need equal lengths")
        if self.pretrain_frames and not self.aux_weight > 0:
            raise ValueError("policy.pretrain_frames needs aux_weight > 0 (the head that regresses "
                             "the object position)")
        return self


class ModelBasedConfig(_Strict):
    """``algorithm.type`` mbpo / dyna / bptt (:mod:`gps_ros.mbrl.learner`): the ensemble, SAC and
    the rollouts.  Defaults: MBPO's (Janner et al. 2019) where they fit a 2-core CPU; the update-
    to-data ratio and the rollout batch are smaller than the paper's 20 and 100 000."""

    members: int = Field(default=7, ge=1, description="networks in the dynamics ensemble")
    elites: int = Field(default=5, ge=1, description="members with the best held-out error, the "
                        "ones that predict")
    model_hidden: List[int] = Field(default=[200, 200, 200], min_length=1)
    model_lr: float = Field(default=1e-3, gt=0)
    model_weight_decay: float = Field(default=5e-5, ge=0)
    model_batch_size: int = Field(default=256, ge=1)
    model_max_epochs: int = Field(default=30, ge=1, description="epochs per refit at most")
    model_patience: int = Field(default=5, ge=1, description="stop a refit after this many "
                                "epochs without a 1 % held-out improvement of any member")
    holdout: float = Field(default=0.1, gt=0, lt=1, description="held-out fraction of the real "
                           "transitions (early stopping, elites)")
    hidden: List[int] = Field(default=[256, 256], min_length=1, description="actor and critics")
    lr: float = Field(default=3e-4, gt=0)
    batch_size: int = Field(default=256, ge=2)
    gamma: float = Field(default=0.99, gt=0, lt=1)
    tau: float = Field(default=0.005, gt=0, le=1)
    init_alpha: float = Field(default=0.1, gt=0, description="initial SAC temperature (tuned "
                              "automatically towards target_entropy)")
    target_entropy: Optional[float] = Field(default=None, description="default -dU")
    action_accel: float = Field(default=3.0, gt=0, description="effort: the policy's torque "
                                "range per joint is what accelerates it at this many rad/s^2 "
                                "(M_jj at the start pose) or holds action_speed against its "
                                "damping, whichever is larger, within the torque limits")
    action_speed: float = Field(default=1.0, gt=0, description="rad/s: velocity commands within "
                                "it (and the effort range above)")
    utd: float = Field(default=10.0, gt=0, description="policy updates per new real transition")
    real_ratio: float = Field(default=0.05, ge=0, le=1, description="fraction of real "
                              "transitions in each policy minibatch (the rest from the model)")
    rollout_batch: int = Field(default=1000, ge=1, description="model rollouts per refresh")
    rollout_every: int = Field(default=250, ge=1, description="policy updates between refreshes")
    rollout_length: List[int] = Field(default=[2, 20, 1, 10], min_length=4, max_length=4,
                                      description="mbpo: [i0, i1, k0, k1]: k0 steps up to "
                                      "iteration i0, linear to k1 at iteration i1 (dyna: 1)")
    model_retain: int = Field(default=5, ge=1, description="rollout refreshes kept in the model "
                              "buffer")
    bptt_horizon: int = Field(default=10, ge=0, description="bptt: model steps the actor's "
                              "gradient flows through (0: SAC's actor update)")
    evaluate: bool = Field(default=True, description="one noiseless trial per condition with the "
                           "deterministic policy after each iteration (eval_final_distance; not "
                           "counted as trials)")

    @model_validator(mode="after")
    def _check(self) -> "ModelBasedConfig":
        if self.elites > self.members:
            raise ValueError(f"elites ({self.elites}) must be <= members ({self.members})")
        i0, i1, k0, k1 = self.rollout_length
        if min(k0, k1) < 1 or i0 < 0 or i1 < i0:
            raise ValueError("rollout_length [i0, i1, k0, k1] needs k0, k1 >= 1 and 0 <= i0 <= i1")
        return self


class LoggingConfig(_Strict):
    """What a run writes besides its checkpoints and metrics.jsonl."""

    tensorboard: bool = Field(default=True, description="TensorBoard scalars per iteration in DIR/tb")
    plots: bool = Field(default=True, description="progress.png and paths.png (planned vs actual EE paths)")
    mcap: bool = Field(default=False, description="iterations/NNNN/trials.mcap (ROS 2 messages, Foxglove)")
    keep_images_iterations: Optional[int] = Field(
        default=None, ge=1, description="keep the camera frames in iterations/NNNN/trials_cNN.npz "
        "of the last N committed iterations only; older trial files are rewritten without them "
        "(X, U and the metadata stay).  null: keep all.  Nothing reads older frames back: the "
        "policy's replay data and pretraining frames live in state.pkl")


class ExperimentConfig(_Strict):
    name: str = "experiment"
    seed: int = 0
    iterations: int = Field(default=10, ge=1)
    agent: AgentConfig
    cost: CostConfig = CostConfig()
    init_controller: InitControllerConfig = InitControllerConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    policy: Optional[PolicyConfig] = None
    model_based: ModelBasedConfig = ModelBasedConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _check_policy(self) -> "ExperimentConfig":
        if self.algorithm.type in ("mdgps", "badmm") and self.policy is None:
            raise ValueError(f"algorithm.type {self.algorithm.type} needs a policy section")
        return self


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(_key_text(p) for p in e["loc"]) or "<root>"
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif "input" in e and e["type"] not in ("missing",):
        msg = f"{msg} (got {e['input']!r})"
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return " ".join(f"config error in {source}: {loc}: {msg}{more}".splitlines())


def _key_text(key) -> str:
    """A config key as the error names it: as written, or quoted where it is empty, has
    surrounding blanks or characters that do not print (so the error stays one readable line)."""
    text = str(key)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`; raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None


def apply_overrides(data: dict, overrides: List[str], source: str = "--set") -> dict:
    """Apply ``KEY.PATH=VALUE`` overrides (VALUE parsed as YAML) to a config mapping in place,
    e.g. ``policy.use_image=false`` or ``agent.T=50``.  Unknown keys are caught by validation."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"config error in {source}: expected KEY.PATH=VALUE, got {item!r}")
        *parents, leaf = key.split(".")
        node = data
        for k in parents:
            if not isinstance(node.get(k), dict):
                node[k] = {} if node.get(k) is None else node[k]
            node = node[k]
            if not isinstance(node, dict):
                raise ConfigError(f"config error in {source}: {key}: {k} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"config error in {source}: {key}: malformed value {value!r}") from None
    return data


def load_config(path: str | Path, overrides: Optional[List[str]] = None) -> ExperimentConfig:
    """Load and validate a YAML experiment config (with optional ``KEY.PATH=VALUE`` overrides)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"config error: cannot read {path}: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config error in {path}:{where} malformed YAML: "
                          f"{getattr(err, 'problem', None) or err}") from None
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"config error in {path}: top level must be a mapping")
        apply_overrides(data, overrides)
    _urdf_relative_to(data, path.parent)
    cfg = parse_config(data, str(path))
    check_robot(cfg, str(path))
    return cfg


def _urdf_relative_to(data: Any, directory: Path) -> None:
    """Make the URDF file names of a config (``agent.robot.urdf``, ``dynamics.model_urdf``)
    absolute where they name a file relative to ``directory`` (the config file's), so the config
    means the same robot from anywhere (e.g. a run's config.yaml)."""
    if not isinstance(data, dict):
        return
    for section, sub, key in (("agent", "robot", "urdf"), ("dynamics", None, "model_urdf")):
        node = data.get(section)
        if sub is not None and isinstance(node, dict):
            node = node.get(sub)
        urdf = node.get(key) if isinstance(node, dict) else None
        if not isinstance(urdf, str) or urdf.lstrip().startswith("<") or "://" in urdf:
            continue
        path = Path(urdf).expanduser()
        if not path.is_absolute() and (directory / path).is_file():
            node[key] = str((directory / path).resolve())


def check_robot(cfg: ExperimentConfig, source: str = "<config>") -> None:
    """Check the agent section against its robot (:func:`gps_ros.robot.agent.check_agent`: the URDF,
    its links and joints, start poses, targets within reach); one :class:`ConfigError` line.  A robot
    whose URDF comes from ROS 2 (``robot_description``) is checked by the nodes that read it."""
    from gps_ros.robot import RobotError
    from gps_ros.robot.agent import FROM_ROS, check_agent

    if cfg.agent.robot.urdf == FROM_ROS:
        return
    try:
        model = check_agent(cfg.agent)
        check_memory(cfg, model.n)
    except (RobotError, ConfigError) as err:
        raise ConfigError(f"config error in {source}: {err}") from None


def run_memory_estimate(cfg: ExperimentConfig, n_joints: int) -> float:
    """A lower bound (bytes) of the arrays a run holds at once: per condition and time step the
    float64 controllers (current, previous, trajectory distribution), dynamics, LQR's Q-function
    and the cost derivatives of each trial (each about (dX + dU)^2 numbers), and the camera frames
    of the trials."""
    a = cfg.agent
    # the state layout of gps_ros.task.StateLayout (joints, velocities, EE points and their
    # velocities), spelled out: config sits below task (no import cycle)
    dX = 2 * n_joints + 6 * len(a.ee_points)
    dXU = dX + n_joints
    N = cfg.algorithm.samples_per_condition
    per_step = 8.0 * dXU * dXU * (8 + N)
    if a.camera is not None:
        per_step += N * a.camera.width * a.camera.height * 3
    return per_step * a.T * len(a.conditions)


def _physical_memory() -> Optional[float]:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(cfg: ExperimentConfig, n_joints: int, available: Optional[float] = None) -> None:
    """One :class:`ConfigError` line when the run cannot fit in this machine's memory
    (``available`` bytes; default: the physical memory) by :func:`run_memory_estimate`, before
    anything is built (agent.T = 1e8 used to end in a 167 GiB numpy MemoryError)."""
    available = _physical_memory() if available is None else available
    need = run_memory_estimate(cfg, n_joints)
    if available and need > available:
        a = cfg.agent
        raise ConfigError(
            f"agent.T: {a.T} steps x {len(a.conditions)} conditions x "
            f"{cfg.algorithm.samples_per_condition} trials need at least {need / 2**30:.3g} GiB "
            f"(controllers, dynamics, cost derivatives{', camera frames' if a.camera else ''}); "
            f"this machine has {available / 2**30:.3g} GiB: lower agent.T, the conditions or "
            "algorithm.samples_per_condition")


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
