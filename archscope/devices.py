"""Peak dense FLOP rates of known accelerators, per precision, for model FLOPs utilization (MFU).

MFU = achieved FLOP/s ÷ the device's peak for the precision the math ran in. The peak is looked up
here by the name CUDA reports (``torch.cuda.get_device_name()``, e.g. ``NVIDIA H100 80GB HBM3``) or
given by the user (``--peak-tflops``); an unknown device has no peak and archscope says so rather
than guess. All figures are **dense** (NVIDIA's datasheets print tensor-core figures "with
sparsity", twice the dense rate; those are halved here) at the boost clock.

Precisions map to the units that do the math:

* ``fp32`` — plain FP32 on CUDA cores (TF32 disabled).
* ``tf32`` — FP32 tensors, TF32 tensor-core math (``fp32_precision = "tf32"``).
* ``bf16`` / ``fp16`` — 16-bit tensor-core math (autocast).

It is also where a device name becomes a device, once for every command and the library
(:func:`resolve_device`). This module imports nothing heavy; its functions import torch when
called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archscope.errors import DeviceError, DeviceOptionError, first_line

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class DeviceSpec:
    """One known device and its peak dense TFLOP/s per precision.

    Attributes:
        key: short name shown in reports (``H100 SXM``).
        pattern: regular expression matched (case-insensitively) against the CUDA device name.
        peak_tflops: precision (one of :data:`PRECISIONS`) → dense TFLOP/s.
        source: where the figures come from.
        memory_gb: the memory on its datasheet, in GB as NVIDIA prints it (10⁹ bytes; CUDA
            reports a little less or more, see :attr:`memory_bytes`).
    """

    key: str
    pattern: str
    peak_tflops: dict[str, float]
    source: str
    memory_gb: float | None = None

    @property
    def memory_bytes(self) -> int | None:
        """The datasheet memory in bytes (``memory_gb`` × 10⁹). CUDA reports a little more for the
        HBM parts (about 79 GiB = 85 × 10⁹ bytes for 80 GB, about 139 GiB for the H200's 141 GB)
        and about as much for L4 (about 22.5 GiB for 24 GB), so this errs on the small side."""
        return None if self.memory_gb is None else int(self.memory_gb * 10**9)

    def peak(self, precision: str) -> float | None:
        """Dense peak TFLOP/s for ``precision``, or ``None`` if not known."""
        return self.peak_tflops.get(precision)


def _peaks(fp32: float, tf32: float, half: float) -> dict[str, float]:
    return {"fp32": fp32, "tf32": tf32, "bf16": half, "fp16": half}


# Order matters: the first pattern that matches wins, and variants that are NOT in the table
# (H100 NVL, H200 NVL, the GH200 superchip's different clocks) must fall through to "unknown"
# rather than borrow a neighbour's numbers, hence the negative look-aheads.
_H100_WP = (
    "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), Table 3 "
    "(dense figures; the sparse ones are 2×)"
)
_A100_DS = (
    "NVIDIA A100 Tensor Core GPU datasheet (2021): FP32 19.5, TF32 156, BF16/FP16 312 "
    "(dense; 312/624 and 624/1248 with sparsity); the same for SXM and PCIe, 40 and 80 GB"
)
DEVICES: tuple[DeviceSpec, ...] = (
    # H200 SXM: datasheet "NVIDIA H200 Tensor Core GPU" (2024): FP32 67, TF32 989*, BF16 1,979*,
    # FP16 1,979* (*with sparsity) — the same compute as H100 SXM, more and faster memory.
    DeviceSpec(
        "H200", r"\bH200\b(?!.*\bNVL\b)", _peaks(66.9, 494.7, 989.4),
        "NVIDIA H200 datasheet (2024): FP32 67, TF32 989 and BF16/FP16 1,979 TFLOP/s with "
        "sparsity → 494.7 / 989.4 dense (same SMs and clocks as H100 SXM)",
        memory_gb=141,  # datasheet: 141 GB HBM3e
    ),
    # H100 PCIe (114 SMs, 1,755 MHz boost): whitepaper Table 3 FP32 51.2, TF32 378/756,
    # BF16/FP16 756/1,513.
    DeviceSpec("H100 PCIe", r"\bH100\b.*\bPCIe\b", _peaks(51.2, 378.0, 756.0), _H100_WP,
               memory_gb=80),  # H100 datasheet (2022): 80 GB
    # H100 SXM5 (132 SMs, 1,830 MHz boost): whitepaper Table 3 FP32 66.9, TF32 494.7/989.4,
    # BF16/FP16 989.4/1,978.9. CUDA names it "NVIDIA H100 80GB HBM3" (no "SXM" in the name).
    DeviceSpec(
        "H100 SXM", r"\bH100\b(?!.*\b(PCIe|NVL)\b)", _peaks(66.9, 494.7, 989.4),
        _H100_WP, memory_gb=80,  # H100 datasheet (2022): 80 GB HBM3
    ),
    # A100: "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB",
    # "NVIDIA A100 80GB PCIe". Peak math is the same in all four; the key tells them apart.
    DeviceSpec("A100 SXM 80GB", r"\bA100\b.*\bSXM.*80\s*GB", _peaks(19.5, 156.0, 312.0), _A100_DS,
               memory_gb=80),  # A100 datasheet (2021): 80 GB HBM2e
    DeviceSpec("A100 SXM 40GB", r"\bA100\b.*\bSXM", _peaks(19.5, 156.0, 312.0), _A100_DS,
               memory_gb=40),  # A100 datasheet (2021): 40 GB HBM2
    DeviceSpec(
        "A100 PCIe 80GB", r"\bA100\b.*(80\s*GB.*PCIe|PCIe.*80\s*GB)", _peaks(19.5, 156.0, 312.0),
        _A100_DS, memory_gb=80,
    ),
    DeviceSpec("A100 PCIe 40GB", r"\bA100\b.*\bPCIe", _peaks(19.5, 156.0, 312.0), _A100_DS,
               memory_gb=40),
    # L4: datasheet "NVIDIA L4 Tensor Core GPU" (2023): FP32 30.3, TF32 120*, BF16/FP16 242*
    # (*with sparsity) → 60 / 121 dense.
    DeviceSpec(
        "L4", r"\bL4\b", _peaks(30.3, 60.0, 121.0),
        "NVIDIA L4 datasheet (2023): FP32 30.3, TF32 120 and BF16/FP16 242 TFLOP/s with "
        "sparsity → 60 / 121 dense",
        memory_gb=24,  # L4 datasheet (2023): 24 GB GDDR6
    ),
)

#: What reports say when a device has no entry and no ``--peak-tflops`` was given.
UNKNOWN_DEVICE = "unknown device: pass --peak-tflops"

#: What reports say on the CPU without ``--peak-tflops``: MFU is a GPU figure (the table holds
#: GPUs' tensor-core peaks), so it is not computed rather than called unknown.
CPU_NO_PEAK = "not computed for CPUs"


def lookup(device_name: str) -> DeviceSpec | None:
    """The known device whose pattern matches ``device_name``, or ``None``.

    >>> lookup("NVIDIA H100 80GB HBM3").key
    'H100 SXM'
    >>> lookup("NVIDIA GeForce RTX 4090") is None
    True
    """
    for spec in DEVICES:
        if re.search(spec.pattern, device_name, flags=re.IGNORECASE):
            return spec
    return None


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak TFLOP/s of ``device_name`` at ``precision``, or ``None`` when unknown."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    spec = lookup(device_name)
    return spec.peak(precision) if spec is not None else None


def current_device_name(device: str | torch.device = "cuda") -> str:
    """The name of ``device`` as torch reports it (``"cpu"`` for the CPU)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    return dev.type


def cuda_unavailable(device: torch.device, requested: str) -> str | None:
    """Why the CUDA ``device`` cannot be used in this process (the start of a one-line error;
    each caller adds its own remedy), or ``None`` where it can (or ``device`` is not CUDA)."""
    import torch

    if device.type != "cuda":
        return None
    if not torch.cuda.is_available():
        build = (f"torch {torch.__version__} built without CUDA" if torch.version.cuda is None
                 else f"torch {torch.__version__} (CUDA {torch.version.cuda}) found no GPU")
        return f"CUDA is not available ({build})"
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        return (f"{requested}: there are only {count} CUDA device(s); use cuda:0 … "
                f"cuda:{count - 1}")
    return None


def resolve_device(requested: str | torch.device, *, library: bool = False) -> torch.device:
    """The device ``requested`` names, checked to be usable in this process.

    For the commands (``library=False``) that is ``auto`` (CUDA when available, else the CPU),
    ``cpu``, ``cuda`` or ``cuda:N``, and errors name ``--device``. For the library
    (``library=True``: ``load_model(device=…)``) it is any device torch can allocate on,
    ``meta`` included, and errors name ``device=``.

    Raises:
        DeviceError: not a device name, CUDA (or device ``N``) not available here, or a device
            type the caller cannot run on.
    """
    import torch

    name = str(requested).strip().lower()
    if name == "auto" and not library:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        names = "meta, cpu, cuda or cuda:N" if library else "--device auto, cuda, cuda:N or cpu"
        raise DeviceOptionError(f"unknown device {str(requested)!r}; use {names}") from None
    if device.type == "cuda":
        problem = cuda_unavailable(device, str(requested))
        if problem is not None:
            if not problem.startswith("CUDA"):
                raise DeviceError(problem)
            remedy = ("use device='cpu' or 'meta'" if library else
                      "use --device cpu, or run on a machine with an NVIDIA GPU and a CUDA build "
                      "of torch")
            raise DeviceError(f"{problem}; {remedy}")
        return device
    if device.type == "cpu" or (library and device.type == "meta"):
        return device
    if not library:
        raise DeviceOptionError(f"device {str(requested)!r} is not supported by archscope; use cuda "
                                "or cpu")
    try:
        torch.empty(0, device=device)
    except Exception as exc:  # any backend's own "not available" error
        raise DeviceError(f"device {str(requested)!r} is not available here ({first_line(exc)}); "
                          "use device='cpu' or 'meta'") from None
    return device

