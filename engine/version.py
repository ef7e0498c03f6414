"""The engine's version: it changes whenever the numerics of a run change."""

# 0.2.0: portable compile target, own exp/log/tanh, batched cycle, pre-drawn random numbers
ENGINE_VERSION = "0.2.0"
