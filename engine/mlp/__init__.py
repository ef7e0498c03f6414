"""The feedforward model (``model = "mlp"``): residual blocks of learned width and depth."""
