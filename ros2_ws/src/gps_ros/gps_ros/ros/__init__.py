"""ROS 2 adapters. The only sub-package that imports rclpy, and only lazily inside functions."""
