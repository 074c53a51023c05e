"""``train.compile``: the training forward/backward through torch.compile (the accuracy pilot's
small model spends its GPU time in unfused element-wise kernels; docs/accuracy-endpoint.md).

On a CPU the compiled step must follow the eager step (same weights, same data: the same losses to
float tolerance), must actually compile, and must not touch evaluation (decoding uses the eager
module). A compiled run is a different run (fused kernels round differently); runs without the key
keep their ids. The first compile of the tiny model costs ~30 s of one CPU core.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process

from common.config import compose
from experiments import config as run_config
from experiments import identity


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_compile_enters_the_run_id_only_when_on() -> None:
    run_config.register()

    def rid(*ov: str) -> str:
        return identity.run_id(compose("run", list(ov)))

    assert rid("train.compile=false") == rid()
    assert rid("train.compile=true") != rid()
    assert "compile" not in identity.run_settings(compose("run", []))["train"]


def test_compile_with_fsdp2_is_one_line_and_exit_2(
    results_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.run.main import main

    args = [f"results_root={results_root}", "sweep_id=compile_cfg", *FAST, "dist=fsdp2", "train.compile=true"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.compile=True" in err[0] and "fsdp2" in err[0], err
    assert not (results_root / "sweeps" / "compile_cfg").exists()


def test_a_compiled_run_compiles_and_follows_the_eager_losses(results_root: Path) -> None:
    import torch._dynamo.utils

    graphs = torch._dynamo.utils.counters["stats"]
    losses, summaries = {}, {}
    for switch in ("false", "true"):
        before = graphs["unique_graphs"]
        code, run_dir = run_in_process(results_root, ["optimizer=adamw", *FAST, f"train.compile={switch}"])
        s = read_summary(run_dir)
        assert code == 0 and s["status"] == "completed", s["status_reason"]
        compiled = graphs["unique_graphs"] - before
        # eager: nothing compiled; compiled: one graph (dynamic=False, every micro-batch one shape),
        # not one per step, and none for the evaluation's decoding
        assert compiled == (1 if switch == "true" else 0), (switch, compiled)
        losses[switch] = [r["loss"] for r in read_metrics(run_dir)]
        summaries[switch] = s
    assert len(losses["true"]) == len(losses["false"]) == 4
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)
    assert losses["true"][-1] < losses["true"][0]
    # evaluation ran on the same eager decoder: both runs scored their samples
    for s in summaries.values():
        assert s["eval_samples"] == 2 and s["rel_l2_error"] is not None
