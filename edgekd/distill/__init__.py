"""Distillation machinery around the pure losses of ``edgekd.train.losses``: feature taps by module
path, a learned projection between feature widths, frozen-teacher runners (PyTorch, OpenVINO), a
teacher-output cache, and ``kd.build_kd`` which assembles the loss a recipe asks for."""
