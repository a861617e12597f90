"""Import OneFlow without the user exporting library paths.

OneFlow 0.9.0 is a CUDA build: ``import oneflow`` needs cuDNN 8 and cuBLAS 11 even on a
machine with no GPU (it then prints "CUDA driver version is insufficient" warnings and
runs on the CPU). The two ``nvidia-*-cu11`` wheels ship those libraries inside
site-packages but do not put them on the loader's path; like torch does for its own
CUDA wheels, we load them with ``RTLD_GLOBAL`` first, so OneFlow's own ``dlopen`` finds
them already resident.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from types import ModuleType

from multilr import BackendError

__all__ = ["import_oneflow"]

# Dependencies before dependents: cublasLt before cublas, ops before cnn/adv before cudnn.
_LIBS = (
    ("cublas", "libcublasLt.so.11"),
    ("cublas", "libcublas.so.11"),
    ("cudnn", "libcudnn_ops_infer.so.8"),
    ("cudnn", "libcudnn_ops_train.so.8"),
    ("cudnn", "libcudnn_cnn_infer.so.8"),
    ("cudnn", "libcudnn_cnn_train.so.8"),
    ("cudnn", "libcudnn_adv_infer.so.8"),
    ("cudnn", "libcudnn_adv_train.so.8"),
    ("cudnn", "libcudnn.so.8"),
)


def _nvidia_root() -> str | None:
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def _preload() -> None:
    root = _nvidia_root()
    if root is None:
        return  # no wheels: rely on the system's libraries (a CUDA machine)
    for package, lib in _LIBS:
        path = os.path.join(root, package, "lib", lib)
        if os.path.exists(path):
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def import_oneflow() -> ModuleType:
    """Load the CUDA library wheels, then import and return ``oneflow``.

    Raises:
        BackendError: OneFlow is not installed or fails to import; the message says
            what to install.

    Example:
        >>> flow = import_oneflow()
        >>> flow.__name__, flow.__version__, import_oneflow() is flow
        ('oneflow', '0.9.0', True)
    """
    if "oneflow" in sys.modules:
        return sys.modules["oneflow"]
    try:
        _preload()
        oneflow = importlib.import_module("oneflow")
    except (ImportError, OSError) as exc:
        raise BackendError(
            f"cannot import oneflow ({exc}); install multilr-oneflow in a Python 3.10 environment: "
            "pip install 'oneflow==0.9.0' 'numpy<2' nvidia-cudnn-cu11==8.9.6.50 "
            "nvidia-cublas-cu11==11.11.3.6 -e backends/oneflow"
        ) from exc
    return oneflow
