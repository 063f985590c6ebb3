"""The one place that sets up the process: threads, offline flags, device and dtype (memory tuning: memory.py).

Every entry point calls :func:`prepare_environment` before anything imports paddle, because
``import paddle`` pins ``OMP_NUM_THREADS=1`` unless it is already set, and paddlenlp contacts its
model hub at import-time resolution unless ``AISTUDIO_BOS_OFFLINE`` is set first.
Device and dtype choice (:func:`select_device`, :func:`resolve_dtype`) import paddle, so they
come after.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

logger = logging.getLogger("address_completion")

OFFLINE_VARIABLES = ("AISTUDIO_BOS_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
HALF_DTYPES = ("float16", "bfloat16")
CACHE_ENV = "ADDRESS_COMPLETION_CACHE"


@dataclass(frozen=True)
class Runtime:
    """What :func:`setup_runtime` decided."""

    device: str  # "cpu" or "gpu"
    dtype: str  # "float32", "bfloat16" or "float16"
    threads: int
    offline: bool


def cache_root() -> Path:
    """Where derived files are kept (tokenizer BPE files, converted models): ``$ADDRESS_COMPLETION_CACHE``,
    else ``$XDG_CACHE_HOME/address_completion`` (``~/.cache/address_completion``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "address_completion"


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def distributed_rank() -> tuple[int, int]:
    """(rank, number of processes) of this process as ``paddle.distributed.launch`` set them; (0, 1) otherwise.

    Read from the launcher's environment, so it is known before paddle is imported; only rank 0 writes a
    run's outputs.
    """
    try:
        return int(os.environ.get("PADDLE_TRAINER_ID", "0")), max(1, int(os.environ.get("PADDLE_TRAINERS_NUM", "1")))
    except ValueError:
        return 0, 1


def looks_like_local_path(model: str | os.PathLike | None) -> bool:
    """True when ``model`` names an existing folder or is written as a path (or ``pkg:PACKAGE/FILE``, a file inside
    an installed package), not a hub name."""
    if model is None:
        return False
    text = str(model)
    path = Path(text).expanduser()
    # A hub name is ORG/NAME: more parts, or an ORG that is a local folder (outputs/tiny-mergd), make it a path.
    return (path.exists() or text.startswith((".", "/", "~", "pkg:")) or os.sep + os.sep in text
            or len(path.parts) > 2 or (len(path.parts) == 2 and path.parent.is_dir()))


def prepare_environment(offline: bool | None = None, model: str | os.PathLike | None = None) -> bool:
    """Set thread count and offline flags. Call before importing paddle. Returns whether offline.

    ``offline=None`` means: offline when ``model`` is a local path or the user already exported
    one of the offline variables; otherwise leave network access alone.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cores()))
    # Quiet paddlenlp's download/telemetry chatter and VisualDL's default logging noise.
    os.environ.setdefault("PADDLE_SDK_CHECK_CONNECTIVITY", "0")
    os.environ.setdefault("GLOG_minloglevel", "2")
    choose_mkl_code_path()
    if offline is None:
        offline = looks_like_local_path(model) or any(os.environ.get(v) == "1" for v in OFFLINE_VARIABLES)
    if offline:
        for variable in OFFLINE_VARIABLES:
            os.environ[variable] = "1"
    if "paddle" in sys.modules and os.environ.get("OMP_NUM_THREADS") == "1" and usable_cores() > 1:
        logger.debug("paddle was imported before prepare_environment; OMP_NUM_THREADS may be 1")
    # datasets (imported by paddlenlp) logs "PyTorch version … available" at INFO through paddlenlp's handler
    # whenever torch is installed (the test and export extras): not news for a Paddle command.
    logging.getLogger("datasets").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")  # jieba (via paddlenlp), cpca
    warnings.filterwarnings("ignore", message="No ccache found")  # Paddle's extension builder; we build none
    warnings.filterwarnings("ignore", message=r"(?s).*incubate.nn.functional.swiglu")  # inside PaddleNLP's Qwen2
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return bool(offline)


MKL_CPU_TYPE_ENV = "MKL_DEBUG_CPU_TYPE"
MKL_AVX2_PATH = "5"  # MKL's code for its AVX2 kernels (mkl_serv_cpu_detect() returns it once chosen)


def cpu_vendor_and_flags(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> tuple[str, frozenset[str]]:
    """The first CPU's ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``, ...) and ``flags`` from Linux's
    /proc/cpuinfo; ``("", frozenset())`` where that file does not exist or has no such lines."""
    vendor, flags = "", frozenset()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return vendor, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if vendor and flags:
            break
    return vendor, flags


@functools.lru_cache(maxsize=None)
def _warn_mkl_ignores(value: str) -> None:
    """Once per value and process (entry points prepare the environment more than once)."""
    logger.warning("%s=%r is not one of MKL's code-path numbers (%s = AVX2); MKL ignores it. Unset it to let "
                   "address-completion choose, or set it empty to keep MKL's own choice", MKL_CPU_TYPE_ENV, value,
                   MKL_AVX2_PATH)


def choose_mkl_code_path(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str | None:
    """On an AMD CPU with AVX2, make Paddle's bundled MKL use its AVX2 kernels; call before importing paddle.

    Why: Paddle 3.3.1's CPU wheel ships MKLML 2019.0 Update 5 (``paddle/libs/libmklml_intel.so``), which picks
    its kernels by CPU vendor and gives every non-Intel CPU its generic SSE2 code (``mkl_serv_cpu_detect()``
    returns 0). On a 2-core AMD EPYC with AVX2 and AVX-512 (2026-11-30) a [832, 896] x [896, 4864] sgemm took
    101 ms that way and 46 ms with ``MKL_DEBUG_CPU_TYPE=5``, and one LoRA step at the Qwen2.5-0.5B shape
    (8 x 104 tokens) 107.8 s against 19.1 s (README.md at 76d8d7b). MKL honours this variable up to 2020.0 and
    ignores it later, so it cannot slow a newer MKL; it is not set on Intel CPUs, where MKL already picks the
    best kernels (and 5 would forbid AVX-512).

    Returns the value set, or None when nothing was changed: not AMD, no AVX2, or ``MKL_DEBUG_CPU_TYPE`` is
    already in the environment (the user's choice wins; set it empty to keep MKL's own choice).
    """
    if MKL_CPU_TYPE_ENV in os.environ:
        value = os.environ[MKL_CPU_TYPE_ENV].strip()
        if value and not value.isdigit():  # MKL ignores it silently and keeps its generic kernels on AMD
            _warn_mkl_ignores(os.environ[MKL_CPU_TYPE_ENV])
        return None
    vendor, flags = cpu_vendor_and_flags(cpuinfo)
    if vendor != "AuthenticAMD" or "avx2" not in flags:
        return None
    if "paddle" in sys.modules:
        logger.debug("paddle was imported before prepare_environment; MKL keeps its generic kernels on this AMD CPU")
    os.environ[MKL_CPU_TYPE_ENV] = MKL_AVX2_PATH
    return MKL_AVX2_PATH


def gpu_available() -> bool:
    """True when Paddle is compiled with CUDA and at least one GPU is visible."""
    import paddle

    try:
        return bool(paddle.device.is_compiled_with_cuda()) and paddle.device.cuda.device_count() > 0
    except Exception:  # a CUDA build on a machine without a driver raises here
        return False


def select_device(requested: str = "auto") -> str:
    """Pick "gpu" or "cpu" and make it Paddle's current device (the error names ``--device``: train and evaluate
    check their key first)."""
    import paddle

    requested = (requested or "auto").lower()
    if requested not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"--device must be one of auto, cpu, gpu; got {requested!r}")
    has_gpu = gpu_available()
    if requested == "gpu" and not has_gpu:
        logger.warning("device 'gpu' requested but Paddle sees no GPU (CPU build or no CUDA device); using cpu")
    device = "gpu" if has_gpu and requested in ("auto", "gpu") else "cpu"
    paddle.set_device(device)
    return device


def resolve_dtype(requested: str | None, device: str) -> str:
    """Map a requested dtype to one the device runs well; half precision on CPU falls back to fp32. The error names
    ``--dtype``: merge, predict and serve pass their flag here, and evaluate and train check their key first."""
    aliases = {None: "float32", "": "float32", "fp32": "float32", "float32": "float32",
               "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}
    key = requested.lower() if isinstance(requested, str) else requested
    if key not in aliases:
        raise ConfigError(f"--dtype must be one of float32, bfloat16, float16; got {requested!r}")
    dtype = aliases[key]
    if dtype in HALF_DTYPES and device == "cpu":
        logger.warning("%s is not supported for training/inference on CPU here; using float32", dtype)
        return "float32"
    return dtype


# What ``import paddle`` prints to stderr whenever OMP_NUM_THREADS > 1 (paddle/base/__init__.py), which
# prepare_environment sets on purpose: a warning about data parallelism and OpenBLAS that fits no run here.
PADDLE_IMPORT_NOTICE = ("WARNING: OMP_NUM_THREADS set to ", "PLEASE USE OMP_NUM_THREADS WISELY.")


def import_paddle() -> Any:
    """``import paddle`` without its OMP_NUM_THREADS notice (other stderr output passes through). Call after
    :func:`prepare_environment`; a no-op import when paddle is already loaded."""
    import contextlib
    import io

    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            import paddle
    finally:
        sys.stderr.write("".join(line for line in printed.getvalue().splitlines(keepends=True)
                                 if not line.startswith(PADDLE_IMPORT_NOTICE)))
    return paddle


def setup_runtime(device: str = "auto", dtype: str | None = "float32", offline: bool | None = None,
                  model: str | os.PathLike | None = None) -> Runtime:
    """Full setup for an entry point that will run a model: environment, then device and dtype."""
    is_offline = prepare_environment(offline=offline, model=model)
    import_paddle()
    chosen_device = select_device(device)
    return Runtime(device=chosen_device, dtype=resolve_dtype(dtype, chosen_device),
                   threads=int(os.environ["OMP_NUM_THREADS"]), offline=is_offline)


# PaddleNLP warnings that say nothing the user can act on; dropped unless --debug.
UNACTIONABLE_PADDLENLP_WARNINGS = (
    "Asynchronous saving is not supported for single card",  # every safetensors save
    "Reset tensor_parallel_degree of lora_config to",  # every adapter load: single-device runs save -1, load 1
)


def _actionable(record: logging.LogRecord) -> bool:
    return logger.isEnabledFor(logging.DEBUG) or not str(record.msg).startswith(UNACTIONABLE_PADDLENLP_WARNINGS)


def quiet_paddlenlp_logs() -> None:
    """PaddleNLP logs every file it loads or saves at INFO; keep its warnings unless --debug made us verbose.

    PaddleNLP resets its logger to DEBUG when imported, so this runs after the import, where models load.
    """
    from paddlenlp.utils.log import logger as paddlenlp_logger

    paddlenlp_logger.set_level("DEBUG" if logger.isEnabledFor(logging.DEBUG) else "WARNING")
    if _actionable not in paddlenlp_logger.logger.filters:
        paddlenlp_logger.logger.addFilter(_actionable)


class StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stderr`` is when a record is emitted.

    ``StreamHandler(sys.stderr)`` keeps the stream it was given: once that stream is replaced and closed
    (pytest's capsys, a caller's redirect), every later record becomes "--- Logging error --- ... I/O
    operation on closed file" instead of a line on the current stderr.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # no stream of its own to keep

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def configure_logging(debug: bool = False) -> None:
    """One-line log records on stderr for the project's logger; paddle's own loggers stay quiet."""
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if debug else "%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    logger.propagate = False
