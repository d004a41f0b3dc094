"""PyTorch helpers: shape checks and the differentiable ops the networks are built from."""
