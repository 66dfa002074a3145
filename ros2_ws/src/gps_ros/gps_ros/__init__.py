"""gps_ros: guided policy search for robot arms, in Python 3 + PyTorch, on ROS 2."""
__version__ = "0.1.0"
