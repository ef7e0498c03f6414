"""PyTorch reference for one training cycle, written the way a typical PyTorch user would.

float64 ``nn.Parameter`` tensors, a Python loop over the steps with ``torch.tanh``,
autograd ``loss.backward()``, ``clip_grad_value_`` and ``torch.optim.Adagrad``; the hidden
state is detached between cycles. There is no structure step (N stays fixed): this module
exists to time the cycle against the Numba engine, and to cross-check gradients.

torch is optional: it is imported inside the class, so this module imports without it.
For one-core timings comparable with the rest, call ``torch.set_num_threads(1)`` first.
"""

from __future__ import annotations

import importlib.util

import numpy as np


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


class TorchReference:
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        mode: str = "variable",
        seed: int = 0,
        *,
        learning_rate=0.1,
        grad_clip=5.0,
        init_scale=0.01,
        l1_strength=3e-5,
        adagrad_eps=1e-4,
    ):
        import torch  # lazily, so that the module imports without torch

        if mode not in ("variable", "fixed"):
            raise ValueError(f"mode must be 'variable' or 'fixed', not {mode!r}")
        self.torch, self.V, self.mode = torch, vocab_size, mode
        self.grad_clip, self.l1_strength = grad_clip, l1_strength
        N, V, f64 = hidden_size, vocab_size, torch.float64
        gen = torch.Generator().manual_seed(seed)

        def normal(*shape):
            return torch.nn.Parameter(torch.randn(*shape, generator=gen, dtype=f64) * init_scale)

        self.Wxh, self.Whh, self.Wiy = normal(N, V), normal(N, N), normal(V, N)
        self.bh = torch.nn.Parameter(torch.zeros(N, dtype=f64))
        self.by = torch.nn.Parameter(torch.zeros(V, dtype=f64))
        self.params = {"Wxh": self.Wxh, "Whh": self.Whh, "Wiy": self.Wiy}
        self.params |= {"bh": self.bh, "by": self.by}
        if mode == "variable":
            self.m = torch.nn.Parameter(torch.ones(N, dtype=f64))
            self.params["m"] = self.m
        # torch's Adagrad divides by sqrt(mem) + eps, the reference by sqrt(mem + 1e-8).
        # eps = 1e-4 = sqrt(1e-8) agrees at mem = 0 and for mem >> 1e-8 (differs by at most
        # a factor sqrt(2) in between); lr_decay 0 and a zero initial sum as in the reference.
        self.opt = torch.optim.Adagrad(self.params.values(), lr=learning_rate, eps=adagrad_eps)
        self.h = torch.zeros(N, dtype=f64)

    def _loss(self, inputs, targets):
        torch = self.torch
        xs = torch.nn.functional.one_hot(torch.as_tensor(inputs, dtype=torch.long), self.V)
        xs = xs.to(torch.float64)
        h, logits = self.h, []
        for t in range(len(inputs)):
            h = torch.tanh(self.Wxh @ xs[t] + self.Whh @ h + self.bh)
            out = self.m * h if self.mode == "variable" else h
            logits.append(self.Wiy @ out + self.by)
        tgt = torch.as_tensor(targets, dtype=torch.long)
        loss = torch.nn.functional.cross_entropy(torch.stack(logits), tgt, reduction="sum")
        objective = loss
        if self.mode == "variable":
            # d/dm of seq_len * A_L1 * sum|m| is A_L1 * sign(m) once per step, as in the reference.
            objective = loss + self.l1_strength * len(inputs) * self.m.abs().sum()
        return loss, objective, h

    def cycle(self, inputs, targets) -> float:
        """One training cycle (forward, backward, clip, Adagrad); returns the loss in nats."""
        self.opt.zero_grad()
        loss, objective, h = self._loss(inputs, targets)
        objective.backward()
        self.torch.nn.utils.clip_grad_value_(self.params.values(), self.grad_clip)
        self.opt.step()
        self.h = h.detach()  # carry the state, cut the graph (truncated BPTT)
        return loss.item()

    def gradients(self, inputs, targets) -> tuple[float, dict[str, np.ndarray]]:
        """Unclipped gradients, no update, no change of state (for cross-checks)."""
        self.opt.zero_grad()
        loss, objective, _ = self._loss(inputs, targets)
        objective.backward()
        grads = {k: p.grad.detach().numpy().copy() for k, p in self.params.items()}
        self.opt.zero_grad()
        return loss.item(), grads

    def set_weights(self, weights: dict[str, np.ndarray], h: np.ndarray) -> None:
        """Copy weights (same names and shapes as NumpyReference) and the hidden state in."""
        torch = self.torch
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(torch.as_tensor(weights[k], dtype=torch.float64))
        self.h = torch.as_tensor(np.array(h, dtype=np.float64))
