from glob import glob

from setuptools import find_packages, setup

package_name = "gps_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["tests"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/ros", glob("config/ros/*.yaml") + glob("config/ros/*.xml")
         + glob("config/ros/*.rviz") + glob("config/ros/*.json")),
        *[("share/" + package_name + "/" + d, glob(d + "/*.urdf") + glob(d + "/*.yaml"))
          for d in sorted(glob("robots/*"))],
    ],
    package_data={package_name: ["../config/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24,<3",
        "scipy>=1.10",
        "pyyaml>=6.0",
        "pydantic>=2.5,<3",
        "pybullet>=3.2.5,<4",
        "gymnasium>=0.29,<2",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "tensorboardX>=2.6,<3",          # TensorBoard event records (no torch, no TensorFlow)
        "mcap>=1.1,<2",                  # trial recording (ROS 2 messages) for Foxglove
        "mcap-ros2-support>=0.5,<1",
        "opencv-python-headless>=4.8,<6",  # camera pipeline (decode, convert, crop, resize), video
        "pin>=3.1,<5",                   # Pinocchio: the robot model (kinematics, dynamics) from URDF
    ],
    extras_require={
        # rosdoc2: the documentation test builds the docs as ROS 2's documentation site does
        "test": ["pytest>=7", "hypothesis>=6.100,<7", "rosdoc2>=0.2,<0.3"],
        # the visuomotor policy; install a CPU build of torch first to avoid a multi-GB CUDA pull
        "policy": ["torch>=2.2,<3"],
        # dynamics.type gp_prior (a sparse GP global prior); the same CPU-torch advice applies
        "gp": ["gpytorch>=1.11,<2"],
        # bench/baseline_sac.py (SAC; TQC from sb3-contrib) and the goal env's HER smoke test;
        # the same CPU-torch advice applies
        "baseline": ["stable-baselines3>=2.3,<3", "sb3-contrib>=2.3,<3"],
        # more robots with their meshes (UR3/5/10, SO-100/101, Kinova, xArm7, Z1, ...), found
        # through package://example-robot-data/... (the shipped ur5 and so101 configs use them)
        "robots": ["example-robot-data>=4,<7"],
    },
    zip_safe=True,
    maintainer="gps_ros developers",
    maintainer_email="gps-ros@example.org",
    description="Guided policy search (LQR-FLM, MDGPS) for ros2_control arms, with a PyBullet default",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "gps-ros = gps_ros.cli:main",
            "sim_node = gps_ros.ros.sim_node:main",
            "sampler_node = gps_ros.ros.sampler_node:main",
            "dynamics_node = gps_ros.ros.dynamics_node:main",
            "trajopt_node = gps_ros.ros.trajopt_node:main",
            "trainer_node = gps_ros.ros.trainer_node:main",
            "policy_node = gps_ros.ros.policy_node:main",
            "coordinator_node = gps_ros.ros.coordinator_node:main",
            "create_keystore = gps_ros.security:main",
        ],
    },
)
