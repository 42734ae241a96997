"""Numerical precision of each phase: bf16 where the hardware computes it fast, fp32 elsewhere.

Three phases choose a precision (config ``bf16: auto | true | false``):

- **rollouts** (``rollout.bf16``; ``baorl eval``/``rollout``/``serve`` ``--dtype``): the rollout engine
  runs a bf16 *copy* of the policy (`RolloutWeights`), refreshed from the fp32 master weights before
  each rollout, so decoding runs bf16 matrix products end to end instead of casting fp32 weights
  op by op (bf16 autocast), which does not pay on a CPU;
- **updates** (``train.bf16``, RL and SFT): bf16 autocast over fp32 master weights (transformers'
  ``bf16=True``): the products in bf16, the weights and AdamW's small updates exact in fp32.

``auto`` is bf16 where the device has bf16 matrix units — a CUDA GPU that supports bf16, a CPU with
AMX-BF16 or AVX512-BF16 (x86) or the BF16 extension (Arm) — and fp32 elsewhere: without those units
torch falls back to bf16 kernels that are several times *slower* than fp32 (measured on an AVX2-only
CPU: 15 vs 74 GFLOP/s for the embedded model's products). The choice is said once per process.
"""

from __future__ import annotations

import copy
import functools
import platform
import subprocess
from pathlib import Path
from typing import Any, Literal

__all__ = ["Bf16", "RolloutWeights", "cpu_bf16_units", "resolve_bf16", "resolve_dtype", "precision_note"]

#: a phase's config value: ``"auto"``, true (bf16) or false (fp32)
Bf16 = Literal["auto"] | bool

_SAID: set[str] = set()

#: /proc/cpuinfo flag (x86) or feature (Arm) -> the unit's name, best first
_CPU_UNITS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16", "bf16": "Arm BF16"}


@functools.cache
def cpu_bf16_units() -> str | None:
    """The CPU's bf16 matrix unit (``"AMX-BF16"``, ``"AVX512-BF16"``, ``"Arm BF16"``), or None.

    Read from ``/proc/cpuinfo`` (Linux) or ``sysctl`` (macOS); anything else counts as none.
    """
    return _units_in(_cpu_features())


def _units_in(features: set[str]) -> str | None:
    for flag, name in _CPU_UNITS.items():
        if flag in features:
            return name
    return None


def _cpu_features() -> set[str]:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return set(value.split())
        return set()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                                 timeout=5, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return set()
        return {"bf16"} if out == "1" else set()
    return set()


def _device_bf16(device: str) -> tuple[bool, str]:
    """Whether `device` has fast bf16 products, and why (for the note)."""
    import torch

    if device.startswith("cuda"):
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, "the GPU supports bf16" if ok else "the GPU has no bf16 support"
    unit = cpu_bf16_units()
    if unit:
        return True, f"the CPU has bf16 matrix units ({unit})"
    return False, "the CPU has no bf16 matrix units (AMX-BF16, AVX512-BF16 or Arm BF16): bf16 would be slower"


def resolve_bf16(value: Bf16 | None, device: str = "cpu", *, what: str = "rollouts") -> bool:
    """`value` (``"auto"``/None, true, false) as a decision for a phase on `device`; ``auto`` is said once.

    An explicit ``true`` on a CPU without bf16 units is honoured (with a warning: it will be slower).
    """
    if value is None or value == "auto":
        ok, why = _device_bf16(device)
        _say(f"{what}: {'bf16' if ok else 'fp32'} ({why}; precision auto)")
        return ok
    if value is True and not device.startswith("cuda") and cpu_bf16_units() is None:
        _say(f"{what}: bf16 as configured, although the CPU has no bf16 matrix units (expect it to be slower "
             "than fp32)", warn=True)
    return bool(value)


def resolve_dtype(dtype: str, device: str = "cpu", *, what: str = "rollouts") -> str:
    """A ``--dtype`` value for inference: ``auto`` -> ``bfloat16`` or ``float32`` (`resolve_bf16`)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if resolve_bf16("auto", device, what=what) else "float32"


def precision_note(device: str = "cpu") -> str:
    """One line: what ``auto`` chooses on this machine and why."""
    ok, why = _device_bf16(device)
    return f"precision auto on {device}: {'bf16' if ok else 'fp32'} ({why})"


def _say(message: str, *, warn: bool = False) -> None:
    """Print `message` to stderr once per process."""
    if message in _SAID:
        return
    _SAID.add(message)
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]{message}[/]" if warn else f"[dim]{message}[/]", highlight=False)


class RolloutWeights:
    """A bf16 copy of a policy for the rollout engine, refreshed from the master weights.

    The copy shares no storage with the master: the optimiser updates the fp32 master, and
    `refresh` (called before each rollout and validation; 0.074-0.078 s over 5 calls for the embedded
    135M model on 2 AVX2 cores) copies the
    weights over, rounding to bf16. Only parameters are cast: buffers (rotary frequencies) keep the
    master's precision. LoRA layers are copied with the rest, so the copy plays the adapted policy.

    Args:
        master: the policy being trained (a transformers model, possibly with LoRA layers injected).
        dtype: the copy's dtype.
    """

    def __init__(self, master: Any, dtype: Any = None) -> None:
        import torch

        self.master = master
        self.dtype = dtype or torch.bfloat16
        self.model = copy.deepcopy(master).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
            p.data = p.data.to(self.dtype)

    def refresh(self) -> Any:
        """Copy the master's current weights into the copy and return the copy."""
        import torch

        with torch.no_grad():
            for dst, src in zip(self.model.parameters(), self.master.parameters(), strict=True):
                dst.copy_(src)
        return self.model
