# Sphinx configuration of the gps_ros documentation, built by rosdoc2
# (`rosdoc2 build --package-path ros2_ws/src/gps_ros`), which wraps this file: the pages of this
# folder, the API reference from the docstrings (sphinx-apidoc) and the README's entry.
import os
import re
import sys


def _package_dir() -> str:
    """The package's source folder, for autodoc: this file's parent's parent.  rosdoc2 runs this
    file from a wrapping conf.py elsewhere (``exec(open("<this file>").read())``), so
    ``__file__`` is the wrapper's; the wrapper names this file."""
    here = os.path.abspath(__file__)
    with open(here) as f:
        wrapped = re.search(r'exec\(open\("([^"]+)"\)', f.read())
    return os.path.dirname(os.path.dirname(wrapped.group(1) if wrapped else here))


sys.path.insert(0, _package_dir())

project = "gps_ros"
author = "gps_ros maintainers"
master_doc = "index"
extensions = ["sphinx_rtd_theme"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

html_theme = "sphinx_rtd_theme"
html_theme_options = {"collapse_navigation": False, "navigation_depth": 4}

# A sub-package re-exports its main classes (``from gps_ros.robot import RobotModel``): document
# each class once, in the module that defines it, so that type hints name one target.
autodoc_default_options = {"ignore-module-all": True}

# rosdoc2 copies this folder's pages under user_docs/ (its Documentation section); the copies it
# also places at the top of the project are not pages of their own
exclude_patterns = ["*.md"]


def _skip_message_stand_ins(app, what, name, obj, skip, options):
    """gps_ros.ros.convert's plain stand-ins for the generated message classes carry the
    messages' names (LinearGaussianController, Trajectory, ...): listed in ``PlainTypes``, not
    documented one by one, so that a type hint names the real class."""
    module = getattr(obj, "__module__", "")
    if what == "module" and module == "gps_ros.ros.convert" and isinstance(obj, type):
        from gps_ros.ros.convert import PlainTypes

        if getattr(PlainTypes, getattr(obj, "__name__", ""), None) is obj:
            return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_message_stand_ins)
