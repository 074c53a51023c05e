"""ShardedOptimizer on 2 CPU processes (gloo, FSDP2), fast: a small torch model, no transformers.

For FlashAdamW (bf16 params, 24-bit master) and bitsandbytes AdamW8bit (fp32 params, which does not
know DTensor and is stepped on the local shards), the sharded run equals the unsharded one bit for
bit when quantisation groups do not straddle shard boundaries: rows of 64 values hold whole
32-value Flash groups, and bitsandbytes' 256-value blocks are 4 whole rows of a 64-row shard.
The state_dict carries DTensors placed like the parameter, and a DCP save/load continues exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2
STEPS = 3
ARMS = ("flash", "bnb")


def build(arm: str) -> tuple[torch.nn.Module, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128, bias=False),  # local shard (64, 64): 4096 values, 8-bit in bnb
        torch.nn.LayerNorm(128),  # fp32 under cast_model
        torch.nn.Linear(128, 64, bias=False),
    )
    if arm == "flash":
        import flashoptim

        flashoptim.cast_model(model)
        return model, lambda g: flashoptim.FlashAdamW(g, lr=1e-2, weight_decay=0.1, backend="torch")
    import bitsandbytes as bnb

    return model, lambda g: bnb.optim.AdamW8bit(g, lr=1e-2, weight_decay=0.1)


def grad_for(i: int, p: torch.Tensor, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(step * 100 + i)
    return torch.randn(tuple(p.shape), generator=g).to(p.dtype)


def worker(rank: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=WORLD)
    for arm in ARMS:  # one spawn for both arms: process start-up is most of this test's time
        run_arm(rank, arm, f"{out}/{arm}")
    dist.destroy_process_group()


def run_arm(rank: int, arm: str, out: str) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    from flashoptim.distributed import ShardedOptimizer, materialise_state

    mesh = init_device_mesh("cpu", (WORLD,))

    def sharded() -> tuple[torch.nn.Module, ShardedOptimizer]:
        model, make = build(arm)
        for module in model:  # one dtype per FSDP unit: each module its own
            fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model, ShardedOptimizer([{"params": list(model.parameters())}], make)

    def step(model: torch.nn.Module, opt: ShardedOptimizer, k: int) -> None:
        for i, p in enumerate(model.parameters()):
            p.grad = distribute_tensor(grad_for(i, p, k), mesh, [Shard(0)])
        opt.step()
        opt.zero_grad()

    model, opt = sharded()
    step(model, opt, 0)
    sd = {"model": model.state_dict(), "optim": opt.state_dict()}
    state0 = dict(sd["optim"]["state"][0])
    state0.update(state0.pop("__bnb_optimizer_quant_state__", {}))  # bitsandbytes nests its tensors
    placements = {
        k: (v.placements == model[0].weight.placements, tuple(v.shape))
        for k, v in state0.items()
        if isinstance(v, DTensor)
    }
    assert all(isinstance(v, DTensor) for v in state0.values() if torch.is_tensor(v)), state0
    dcp.save(sd, checkpoint_id=f"{out}/dcp")
    for k in range(1, STEPS):
        step(model, opt, k)
    fresh, fresh_opt = sharded()
    materialise_state(fresh_opt, fresh.parameters())
    sd = {"model": fresh.state_dict(), "optim": fresh_opt.state_dict()}
    dcp.load(sd, checkpoint_id=f"{out}/dcp")
    fresh.load_state_dict(sd["model"])
    fresh_opt.load_state_dict(sd["optim"])
    for k in range(1, STEPS):
        step(fresh, fresh_opt, k)
    full = [p.full_tensor() for p in model.parameters()]
    resumed = [p.full_tensor() for p in fresh.parameters()]
    if rank == 0:
        torch.save({"full": full, "resumed": resumed, "placements": placements}, f"{out}/result.pt")
    dist.barrier()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp2_adapter")
    t0 = time.perf_counter()
    mp.spawn(worker, args=(str(out),), nprocs=WORLD, join=True)
    print(f"2-process run of both arms: {time.perf_counter() - t0:.1f} s")
    return out


@pytest.mark.slow  # two spawned processes importing torch + bitsandbytes: about 25 s CPU time
@pytest.mark.parametrize("arm", ARMS)
def test_sharded_steps_equal_unsharded_and_resume_exactly(results: Path, arm: str) -> None:
    got = torch.load(results / arm / "result.pt")
    model, make = build(arm)
    opt = make([{"params": list(model.parameters())}])
    for k in range(STEPS):
        for i, p in enumerate(model.parameters()):
            p.grad = grad_for(i, p, k)
        opt.step()
        opt.zero_grad()
    for want, sharded, resumed in zip(model.parameters(), got["full"], got["resumed"]):
        assert sharded.dtype == want.dtype
        assert torch.equal(sharded, want.detach()), f"{arm}: sharded update differs from unsharded"
        assert torch.equal(resumed, sharded), f"{arm}: DCP save/load changed the trajectory"
    # state of the first weight: tensors of the shard's size sit exactly like the parameter
    same = [k for k, (placed_like_param, shape) in got["placements"].items() if shape == (128, 64)]
    assert same and all(got["placements"][k][0] for k in same), got["placements"]
    expected = {"flash": {"correction", "exp_avg_codes", "exp_avg_sq_codes"}, "bnb": {"state1", "state2"}}[
        arm
    ]
    assert expected <= set(same), same


def test_world_size_one_in_process_state_is_dtensor_and_round_trips(tmp_path: Path) -> None:
    """Fast (no process spawn): the sharded code path on a 1-rank gloo group in this process.
    Flash and bitsandbytes states come out of state_dict() as DTensors on the parameter's mesh,
    and a DCP save/load into a fresh model and optimizer continues bit-identically."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, distribute_tensor

    from flashoptim.distributed import ShardedOptimizer, full_fp32_master, materialise_state

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        for arm in ARMS:

            def sharded() -> tuple[torch.nn.Module, ShardedOptimizer]:
                model, make = build(arm)  # noqa: B023 (called within this iteration)
                for module in model:
                    fully_shard(module, mesh=mesh)
                fully_shard(model, mesh=mesh)
                return model, ShardedOptimizer([{"params": list(model.parameters())}], make)

            def step(model: torch.nn.Module, opt: ShardedOptimizer, k: int) -> None:
                for i, p in enumerate(model.parameters()):
                    p.grad = distribute_tensor(grad_for(i, p, k), mesh, p.placements)
                opt.step()
                opt.zero_grad()

            model, opt = sharded()
            step(model, opt, 0)
            sd = {"model": model.state_dict(), "optim": opt.state_dict()}
            tensors = [v for st in sd["optim"]["state"].values() for v in _leaves(st)]
            assert tensors and all(isinstance(v, DTensor) and v.device_mesh == mesh for v in tensors)
            dcp.save(sd, checkpoint_id=str(tmp_path / arm))
            step(model, opt, 1)
            fresh, fresh_opt = sharded()
            materialise_state(fresh_opt, fresh.parameters())
            sd = {"model": fresh.state_dict(), "optim": fresh_opt.state_dict()}
            dcp.load(sd, checkpoint_id=str(tmp_path / arm))
            fresh.load_state_dict(sd["model"])
            fresh_opt.load_state_dict(sd["optim"])
            step(fresh, fresh_opt, 1)
            for a, b in zip(model.parameters(), fresh.parameters()):
                assert torch.equal(a.full_tensor(), b.full_tensor()), arm
            if arm == "flash":  # 24-bit master: the correction moves the master off the bf16 grid
                masters = full_fp32_master(model, opt)
                w = masters["0.weight"]
                assert w.dtype == torch.float32 and not torch.equal(w, w.bfloat16().float())
    finally:
        dist.destroy_process_group()


def _leaves(d: dict[str, Any]) -> list[Any]:
    out = []
    for v in d.values():
        out.extend(_leaves(v) if isinstance(v, dict) else [v] if torch.is_tensor(v) else [])
    return out


def test_world_size_one_gradient_release_steps_inside_backward(tmp_path: Path) -> None:
    """FSDP2 writes each unit's reduce-scattered gradient itself and then calls the sharded
    parameter's post-accumulate-grad hooks (torch 2.11 ``foreach_reduce``): the release hook steps
    there, so after backward no gradient is left and the update equals a plain step's."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from flashoptim.distributed import ShardedOptimizer, enable_sharded_gradient_release

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1)).bfloat16()
        after = {}
        for release in (False, True):
            model, make = build("flash")
            for module in model:
                fully_shard(module, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = ShardedOptimizer([{"params": list(model.parameters())}], make)
            handle = enable_sharded_gradient_release(model, opt) if release else None
            model(x).float().pow(2).mean().backward()
            if handle is None:
                opt.step()
                opt.zero_grad()
            else:
                assert all(p.grad is None for p in model.parameters()), "gradients left after release"
                handle.remove()
            assert all(opt.state[opt.proxy(p)]["step"] == 1 for p in model.parameters())
            after[release] = [p.full_tensor().clone() for p in model.parameters()]
        for a, b in zip(after[False], after[True]):
            assert torch.equal(a, b)
    finally:
        dist.destroy_process_group()
