"""The arithmetic a run computes in (`train.precision`), for training and inference.

- fp32: every operation in float32 (the CPU default: exact, the tests compare bit for bit);
- tf32: float32 tensors, matrix products on TensorFloat-32 units (Ampere and later);
- bf16 / fp16: autocast: matrix products and attention in 16 bits, the weights and the
  optimiser in float32; fp16 also scales the loss (a gradient scaler) against underflow;
- auto: fp32 on a CPU; on a GPU bf16 where it is supported (Ampere and later), else fp16.

Whatever the setting, the parts of CNC that are sensitive to rounding run in float32:
the joint-space projections and every product with the text features (eqs. 1, 4, 7, 10,
whose logits are divided by tau = 0.001), and the cosines of eqs. 9 and 17
(`full_precision`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve(precision: str, device: str) -> str:
    """The precision `auto` stands for on `device`."""
    if precision != "auto":
        return precision
    if not str(device).startswith("cuda"):
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def configure(precision: str) -> None:
    """Process-wide switches: TF32 matrix products only when asked for."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def autocast(precision: str, device: str) -> AbstractContextManager:
    """The context a forward pass runs in."""
    if precision not in HALF:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=HALF[precision])


def scaler(precision: str, device: str) -> torch.amp.GradScaler:
    """A loss scaler, active for fp16 only (a pass-through otherwise)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


@contextmanager
def full_precision(like: torch.Tensor) -> Iterator[None]:
    """Autocast off, on `like`'s device: what runs inside computes in float32 (on the
    meta device, where FLOPs are counted without compute, there is no autocast)."""
    if like.device.type == "meta":
        yield
        return
    with torch.autocast(like.device.type, enabled=False):
        yield
