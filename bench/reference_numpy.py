"""Plain-NumPy reference for one training cycle of Miconi's differentiable-structure RNN.

It is written on purpose in the per-step style of the published code (Karpathy's
min-char-rnn, which the paper's code extends): dicts keyed by step, one-hot column vectors,
one ``np.dot`` per product, a backward loop in reverse, ``np.delete``/``np.vstack`` to
change the size. It is the slow baseline the benchmarks compare the Numba engine with, and
a second, readable implementation of /work/shared/REFERENCE.md for checking gradients.
"""

from __future__ import annotations

import numpy as np

_WEIGHTS = ("Wxh", "Whh", "Wiy", "bh", "by")


class NumpyReference:
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        mode: str = "variable",
        *,
        learning_rate=0.1,
        grad_clip=5.0,
        init_scale=0.01,
        l1_strength=3e-5,
        deletion_threshold=0.05,
        min_multiplier=0.025,
        keep_below=1,
        add_prob=0.05,
        delete_prob=0.25,
        spontaneous_add_prob=1e-4,
        capacity=100,
        rng: np.random.Generator | None = None,
    ):
        if mode not in ("variable", "fixed"):
            raise ValueError(f"mode must be 'variable' or 'fixed', not {mode!r}")
        self.V, self.mode = vocab_size, mode
        self.lr, self.grad_clip, self.init_scale = learning_rate, grad_clip, init_scale
        self.l1_strength, self.deletion_threshold = l1_strength, deletion_threshold
        self.min_multiplier, self.keep_below = min_multiplier, keep_below
        self.add_prob, self.delete_prob = add_prob, delete_prob
        self.spontaneous_add_prob, self.capacity = spontaneous_add_prob, capacity
        self.rng = rng if rng is not None else np.random.default_rng()
        N, V, s = hidden_size, vocab_size, init_scale
        # Drawn in the order Wxh, Whh, Wiy (min-char-rnn's order).
        self.Wxh = self.rng.normal(0.0, s, (N, V))
        self.Whh = self.rng.normal(0.0, s, (N, N))
        self.Wiy = self.rng.normal(0.0, s, (V, N))
        self.bh, self.by = np.zeros(N), np.zeros(V)
        self.h = np.zeros(N)  # hidden state carried from one cycle to the next
        self.names = _WEIGHTS + (("m",) if mode == "variable" else ())
        if mode == "variable":
            self.m = np.ones(N)  # every multiplier (the first neuron's included) starts at 1
        for name in self.names:  # Adagrad memories mWxh, ..., mm start at 0
            setattr(self, "m" + name, np.zeros_like(getattr(self, name)))

    @property
    def N(self) -> int:
        return self.Whh.shape[0]

    def reset_hidden(self) -> None:
        """Zero the carried hidden state (start of the data, or when the data wraps)."""
        self.h = np.zeros(self.N)

    def _forward_backward(self, inputs, targets):
        Wxh, Whh, Wiy = self.Wxh, self.Whh, self.Wiy
        bh, by = self.bh[:, None], self.by[:, None]  # column views, as in min-char-rnn
        variable = self.mode == "variable"
        m = self.m[:, None] if variable else None
        xs, hs, outs, ps = {}, {}, {}, {}
        hs[-1] = self.h[:, None].copy()
        loss = 0.0
        for t in range(len(inputs)):
            xs[t] = np.zeros((self.V, 1))  # one-hot input
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
            outs[t] = m * hs[t] if variable else hs[t]  # the output layer sees m * h
            ys = np.dot(Wiy, outs[t]) + by
            # No max-shift, as in min-char-rnn: the weights stay small enough.
            ps[t] = np.exp(ys) / np.sum(np.exp(ys))
            loss += -np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWiy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Wiy)
        dbh, dby = np.zeros_like(bh), np.zeros_like(by)
        dhnext = np.zeros_like(hs[-1])
        if variable:
            dm = np.zeros_like(m)
            l1 = self.l1_strength * np.sign(m)  # L1 term, added once per step (40 per cycle)
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1  # softmax + cross-entropy gradient
            dWiy += np.dot(dy, outs[t].T)
            dby += dy
            dpost = np.dot(Wiy.T, dy)  # gradient w.r.t. the output layer's input (m * h)
            if variable:
                dm += dpost * hs[t] + l1
                dh = m * dpost + dhnext  # backprop into h goes through the multiplier
            else:
                dh = dpost + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh  # through tanh
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        grads = {"Wxh": dWxh, "Whh": dWhh, "Wiy": dWiy, "bh": dbh.ravel(), "by": dby.ravel()}
        if variable:
            grads["m"] = dm.ravel()
        return loss, grads, hs[len(inputs) - 1].ravel()

    def gradients(self, inputs, targets) -> tuple[float, dict[str, np.ndarray]]:
        """Forward and backward only: no clip, no update, no change of state."""
        loss, grads, _ = self._forward_backward(inputs, targets)
        return loss, grads

    def cycle(self, inputs: np.ndarray, targets: np.ndarray, *, structure: bool = True) -> float:
        """One training cycle; returns the summed loss in nats."""
        loss, grads, self.h = self._forward_backward(inputs, targets)
        for name, g in grads.items():
            np.clip(g, -self.grad_clip, self.grad_clip, out=g)  # clip every gradient first
            w, mem = getattr(self, name), getattr(self, "m" + name)
            mem += g * g  # Adagrad, in place; multipliers included
            w -= self.lr * g / np.sqrt(mem + 1e-8)
        # structure=False keeps N fixed (benches); it skips the multiplier floor too.
        if self.mode == "variable" and structure:
            self._structure_step()
        return loss

    def _structure_step(self) -> None:
        self.m = np.maximum(self.m, self.min_multiplier)  # 1. floor on multipliers
        rng, k, N = self.rng, self.keep_below, self.N
        # Above threshold means |m| > T_D: a new neuron (m = T_D exactly) counts as below.
        below = np.flatnonzero(np.abs(self.m) <= self.deletion_threshold)
        n_above = N - len(below)
        # 2. Deletion: more than k below threshold -> keep k of them at random, delete each
        # of the rest with probability P_del.
        if n_above < N - k:
            candidates = rng.permutation(below)[k:]
            doomed = candidates[rng.random(len(candidates)) < self.delete_prob]
            if len(doomed):
                self._delete(doomed)
        # 3. Addition: all above threshold (fewer than k below) with P_add, or spontaneously.
        # Counting before or after the deletion gives the same answer: a deletion leaves at
        # least k neurons below threshold. The cap uses N after the deletion.
        grow = (n_above > N - k and rng.random() < self.add_prob) or (
            rng.random() < self.spontaneous_add_prob
        )
        if grow and self.N < self.capacity - 1:
            self._add()

    def _delete(self, idx: np.ndarray) -> None:
        # Remove the neurons' Wxh rows, Whh rows and columns, Wiy columns, biases,
        # multipliers, hidden states and all their Adagrad memories.
        for p in ("", "m"):
            setattr(self, p + "Wxh", np.delete(getattr(self, p + "Wxh"), idx, axis=0))
            whh = np.delete(getattr(self, p + "Whh"), idx, axis=0)
            setattr(self, p + "Whh", np.delete(whh, idx, axis=1))
            setattr(self, p + "Wiy", np.delete(getattr(self, p + "Wiy"), idx, axis=1))
            setattr(self, p + "bh", np.delete(getattr(self, p + "bh"), idx))
            setattr(self, p + "m", np.delete(getattr(self, p + "m"), idx))
        self.h = np.delete(self.h, idx)

    def _add(self) -> None:
        # New neuron: random weights in, out and recurrent (draw order Wxh row, Whh column,
        # Whh row, Wiy column), bias 0, hidden state 0, multiplier at the deletion threshold
        # (a small effect on the output at first), Adagrad memories 0.
        rng, s, N, V = self.rng, self.init_scale, self.N, self.V
        self.Wxh = np.vstack([self.Wxh, rng.normal(0.0, s, (1, V))])
        col = rng.normal(0.0, s, (N, 1))
        self.Whh = np.vstack([np.hstack([self.Whh, col]), rng.normal(0.0, s, (1, N + 1))])
        self.Wiy = np.hstack([self.Wiy, rng.normal(0.0, s, (V, 1))])
        self.bh, self.h = np.append(self.bh, 0.0), np.append(self.h, 0.0)
        self.m = np.append(self.m, self.deletion_threshold)
        self.mWxh = np.vstack([self.mWxh, np.zeros((1, V))])
        self.mWhh = np.pad(self.mWhh, ((0, 1), (0, 1)))
        self.mWiy = np.hstack([self.mWiy, np.zeros((V, 1))])
        self.mbh, self.mm = np.append(self.mbh, 0.0), np.append(self.mm, 0.0)
