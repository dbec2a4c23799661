"""Torch-free edge runtime: load a deploy bundle and classify a video file or camera stream.

Everything in this package imports only the standard library, numpy, OpenCV and one inference
library (OpenVINO on CPU boxes, TensorRT + cuda-python on Jetson), never torch and never another
edgekd module, because ``edgekd pack`` copies these files verbatim into each bundle as the
``edgekd_runtime`` package. Inside a bundle, run ``python -m edgekd_runtime . VIDEO`` (see
``deploy/README.md``). Importing this package imports nothing heavy; backends load lazily.
"""

RUNTIME_FILES = (
    "__init__.py",
    "__main__.py",
    "bundle.py",
    "backends.py",
    "online.py",
    "preprocess.py",
    "stream.py",
    "tensorrt_build.py",
    "tensorrt_runner.py",
)
"""The files ``edgekd pack`` copies into a bundle (the whole runtime; nothing else is needed)."""
