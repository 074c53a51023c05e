"""Shared helpers for the flashoptim tests: a small regression task, a tiny Llama, a Lion reference."""

from __future__ import annotations

import torch


def regression_task(seed: int = 0, n: int = 4096, d_in: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    w = torch.randn(d_in, 1, generator=g)
    y = torch.tanh(x @ w) + 0.1 * torch.sin(3 * x[:, :1]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def small_mlp(seed: int = 0, d_in: int = 16, hidden: int = 64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden),
        torch.nn.GELU(),
        torch.nn.LayerNorm(hidden),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, 1),
    )


def tiny_llama(hidden: int, intermediate: int, vocab: int, seed: int = 0, **extra: int) -> torch.nn.Module:
    """A random-init 2-layer transformers Llama (fp32, CPU): real model tensors for the tests."""
    import transformers

    cfg = transformers.LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        **extra,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg)


class LionReference(torch.optim.Optimizer):
    """Lion as written in Chen et al. 2023 (Algorithm 2), fp32: the counterpart of FlashLion."""

    def __init__(self, params, lr: float = 1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(b1 * m + (1 - b1) * p.grad), alpha=-group["lr"])
                m.mul_(b2).add_(p.grad, alpha=1 - b2)
