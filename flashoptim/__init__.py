"""flashoptim: FlashOptim optimizers (bf16 weights + integer master-weight correction + companded
8-bit states), with a readable PyTorch path everywhere and fused Triton kernels on CUDA.

Two-line swap from ``torch.optim.AdamW``::

    from flashoptim import FlashAdamW, cast_model
    cast_model(model); optimizer = FlashAdamW(model.parameters(), lr=1e-4)
"""

from flashoptim.adam import FlashAdam, FlashAdamW
from flashoptim.companders import Compander
from flashoptim.lion import FlashLion
from flashoptim.model_utils import GradientReleaseHandle, cast_model, enable_gradient_release
from flashoptim.optimizer import FlashOptimizer
from flashoptim.sgd import FlashSGD, FlashSGDW

__all__ = [
    "Compander",
    "FlashAdam",
    "FlashAdamW",
    "FlashLion",
    "FlashOptimizer",
    "FlashSGD",
    "FlashSGDW",
    "GradientReleaseHandle",
    "cast_model",
    "enable_gradient_release",
]

__version__ = "0.1.0"
