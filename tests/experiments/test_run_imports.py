"""A run imports only what it uses: start-up is most of a smoke run's wall time (issue 18, item 9).

One real run (the fixture dataset, W&B offline, so W&B's finish is included) in a fresh interpreter;
afterwards ``sys.modules`` must hold none of the heavy modules that only other stages use: pandas and
matplotlib (analysis), scikit-learn and scipy (the baselines; transformers imports scikit-learn and
scipy whenever they are installed, common/imports.py), FEniCSx (datagen). torch._dynamo and sympy are not
on the list: transformers' modeling core imports them (``masking_utils``, and ``torch.distributed.tensor``
through ``core_model_loading``) whenever a model class is imported, and torch's own optimizers import
torch._dynamo at every ``step()`` (``torch.optim.optimizer._use_grad_for_differentiable``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root, read_summary

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "matplotlib", "sklearn", "scipy", "dolfinx", "analysis")

_PROBE = """
import json, sys
from experiments.run.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_a_run_loads_no_module_only_other_stages_use(results_root: Path) -> None:
    fast = [o for o in FAST if not o.startswith("wandb=")]
    args = [f"results_root={results_root}", *fast, "wandb=offline", "sweep_id=imports", "train.max_steps=2"]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE % (HEAVY,), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0
    run_dirs = list((results_root / "sweeps" / "imports" / "runs").iterdir())
    assert len(run_dirs) == 1 and read_summary(run_dirs[0])["status"] == "completed"
    assert list((run_dirs[0] / "wandb").glob("offline-run-*")), (
        "W&B (offline) did not run: its finish went untested"
    )
    assert out["loaded"] == []
