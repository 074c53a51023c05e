"""FlashOptim under FSDP2 (2 CPU processes, gloo): the sharded state reconstructs to the same fp32
master weights as an unsharded run, bit for bit, and survives a DCP save/load.

Why bit-identical is the right expectation: the Flash update is elementwise, and the 8-bit states
are quantised in groups of 32 consecutive values of a rank's shard. FSDP2 shards dim 0; with row
widths that are multiples of 32 (hidden 64, MLP 128, 2 KV heads x 16 = 32) and dim-0 chunks that
split between rows, every group of the sharded run holds the same 32 values as in the unsharded
run, so quantisation, scales and corrections agree exactly. (With widths that are not multiples of
32, groups near the shard edges differ: still a correct update, but no longer bit-identical.) Both
runs are fed the same gradients (seeded per step and parameter), so only the sharding differs.

This file is also the worker: ``torchrun --nproc_per_node 2 tests/flashoptim/test_fsdp2_master.py OUT``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

STEPS_BEFORE_SAVE = 2
STEPS_AFTER_SAVE = 2
VOCAB = 96  # 48 rows per rank


def build_model() -> torch.nn.Module:
    import transformers

    import flashoptim

    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    flashoptim.cast_model(model)  # bf16 matrices, fp32 norms
    return model


def make_optimizer(params: list[torch.nn.Parameter] | list[dict]) -> torch.optim.Optimizer:
    import flashoptim

    return flashoptim.FlashAdamW(params, lr=1e-2, weight_decay=0.1, backend="torch")


def grad_for(name: str, p: torch.Tensor, step: int) -> torch.Tensor:
    """The same full gradient in every run: seeded by (step, parameter name)."""
    seed = step * 1000 + sum(ord(c) for c in name)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(p.shape), generator=g).to(p.dtype)


def worker(out: Path) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard, distribute_tensor

    from flashoptim.distributed import ShardedOptimizer, full_fp32_master, materialise_state

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))

    def sharded() -> tuple[torch.nn.Module, ShardedOptimizer]:
        model = build_model()
        for mod in model.modules():  # fp32 norms: their own FSDP units (uniform dtype per unit)
            if "norm" in type(mod).__name__.lower() and list(mod.parameters(recurse=False)):
                fully_shard(mod, mesh=mesh)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model, ShardedOptimizer([{"params": list(model.parameters())}], make_optimizer)

    def step(model: torch.nn.Module, opt: ShardedOptimizer, k: int) -> None:
        for name, p in model.named_parameters():
            p.grad = distribute_tensor(grad_for(name, p, k), mesh, [Shard(0)])
        opt.step()
        opt.zero_grad()

    model, opt = sharded()
    for k in range(STEPS_BEFORE_SAVE):
        step(model, opt, k)
    sd = {"model": model.state_dict(), "optim": opt.state_dict()}
    dcp.save(sd, checkpoint_id=str(out / "dcp"))
    for k in range(STEPS_BEFORE_SAVE, STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
        step(model, opt, k)
    continued = full_fp32_master(model, opt)

    fresh, fresh_opt = sharded()  # a resumed process: new model, new optimizer, state from DCP
    materialise_state(fresh_opt, fresh.parameters())
    sd = {"model": fresh.state_dict(), "optim": fresh_opt.state_dict()}
    dcp.load(sd, checkpoint_id=str(out / "dcp"))
    fresh.load_state_dict(sd["model"])
    fresh_opt.load_state_dict(sd["optim"])
    for k in range(STEPS_BEFORE_SAVE, STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
        step(fresh, fresh_opt, k)
    resumed = full_fp32_master(fresh, fresh_opt)
    local_state_bytes = opt.state_nbytes()
    if dist.get_rank() == 0:
        torch.save({"continued": continued, "resumed": resumed}, out / "masters.pt")
    sizes: list[int | None] = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, local_state_bytes)
    if dist.get_rank() == 0:
        torch.save(sizes, out / "state_bytes.pt")
    dist.destroy_process_group()


def unsharded_masters() -> tuple[dict[str, torch.Tensor], int]:
    model = build_model()
    opt = make_optimizer(list(model.parameters()))
    for k in range(STEPS_BEFORE_SAVE + STEPS_AFTER_SAVE):
        for name, p in model.named_parameters():
            p.grad = grad_for(name, p, k)
        opt.step()
        opt.zero_grad()
    return opt.get_fp32_model_state_dict(model), opt.state_nbytes()


@pytest.mark.slow  # torchrun + 2 processes importing transformers: about 40 s wall
def test_sharded_state_reconstructs_the_unsharded_fp32_master(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         __file__, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "masters.pt")
    want, full_state_bytes = unsharded_masters()
    assert set(got["continued"]) == set(n for n in want if n in got["continued"]) and got["continued"]
    for name, full in got["continued"].items():
        assert full.dtype == torch.float32
        assert torch.equal(full, want[name].float()), f"{name}: sharded master differs from unsharded"
        assert torch.equal(got["resumed"][name], full), f"{name}: DCP resume changed the trajectory"
    # the state really is sharded: each rank holds about half of the unsharded state's bytes
    per_rank = torch.load(tmp_path / "state_bytes.pt")
    assert len(per_rank) == 2 and all(0.4 * full_state_bytes < b < 0.6 * full_state_bytes for b in per_rank)
    print(f"wall {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
