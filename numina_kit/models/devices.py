"""What this machine can run: the compute capability of each visible GPU, whether bitsandbytes runs int8 on a
device, and the precisions (dtype names) a GPU supports."""

import functools
import os

from numina_kit.errors import InputError


_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "fp32": "float32",
    "float16": "float16",
    "half": "float16",
    "fp16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def cuda_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible CUDA GPU, e.g. [(7, 5), (7, 5)] on Kaggle's 2x T4; [] without a GPU.

    Read through NVML (`pynvml`, from nvidia-ml-py, which vLLM and Kaggle's image install), never through
    `torch.cuda`: a CUDA query through torch in this process makes vLLM's forked workers fail later. Only without
    NVML is torch asked, with `PYTORCH_NVML_BASED_CUDA_CHECK=1` so that finding no GPU initialises nothing.
    """
    try:
        import pynvml
    except ImportError:
        return _torch_capabilities()
    try:
        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver: no GPU
        return []
    try:
        indices = _visible_indices(pynvml.nvmlDeviceGetCount())
        handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in indices]
        return [tuple(pynvml.nvmlDeviceGetCudaComputeCapability(handle)) for handle in handles]
    finally:
        pynvml.nvmlShutdown()


def _visible_indices(count: int) -> list[int]:
    """The NVML indices of the GPUs `CUDA_VISIBLE_DEVICES` lets CUDA see (all of them when it is unset or uses UUIDs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.replace(",", "").strip().isdigit():
        return [] if visible == "" else list(range(count))
    return [int(index) for index in visible.split(",") if int(index) < count]


def _torch_capabilities() -> list[tuple[int, int]]:
    try:
        import torch
    except ImportError:
        return []
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    if not torch.cuda.is_available():
        return []
    return [tuple(torch.cuda.get_device_capability(index)) for index in range(torch.cuda.device_count())]


@functools.cache
def bitsandbytes_problem(device: str) -> str | None:
    """Why bitsandbytes int8 cannot run on `device` ("cpu", "cuda"), found by running one int8 layer; None if it can."""
    try:
        import bitsandbytes as bnb
        import torch
    except ImportError:
        return "bitsandbytes is not installed (pip install bitsandbytes)"
    try:
        layer = bnb.nn.Linear8bitLt(64, 32, bias=False, has_fp16_weights=False).to(device)
        dtype = torch.float32 if device == "cpu" else torch.float16
        layer(torch.randn(2, 64, device=device, dtype=dtype))
    except Exception as error:
        first = (str(error).splitlines() or [type(error).__name__])[0]
        return f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot run int8 on {device}: {first}"
    return None


def dtype_name(dtype: object) -> str:
    """The canonical name of `dtype` ("float16", "bfloat16", "float32" or "auto"); a torch dtype is accepted."""
    name = str(dtype).removeprefix("torch.")
    if name == "auto":
        return name
    if name not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, float16, bfloat16 or float32")
    return _DTYPES[name]


def torch_capability(device: str) -> tuple[int, int]:
    """Compute capability of a CUDA `device` as torch reports it (initialises CUDA in this process)."""
    import torch

    return tuple(torch.cuda.get_device_capability(torch.device(device)))


def no_bf16_message(capability: tuple[int, int]) -> str:
    major, minor = capability
    return (
        f"bfloat16 needs a GPU of compute capability 8.0 or newer and this one is {major}.{minor} (e.g. a T4): "
        "use dtype='float16'"
    )
