"""Training, distillation and evaluation of PyTorch models."""
