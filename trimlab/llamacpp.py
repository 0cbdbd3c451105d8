"""llama.cpp, the engine: its converter, its quantizer, its runtime (llama-cpp-python).

The ``deploy`` extra installs ``llama-cpp-python`` (built from its sdist once; pip's wheel
cache serves later installs). Its wheel holds the engine but not llama.cpp's Python
converter, which only its sdist vendors (``convert_hf_to_gguf.py``, ``conversion/`` and
``gguf-py``). :func:`fetch_converter` takes those files from the sdist of exactly the
installed version (``pip download``, once, into the trimlab cache), so converter and
engine always agree on the GGUF format. :func:`convert` runs the converter in a
subprocess, through ``trimlab/convert_hook.py``, because it needs its own, newer copy of
the ``gguf`` package on ``sys.path``.
"""

from __future__ import annotations

import importlib.metadata as md
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path

import numpy as np

from trimlab.checkpoint import atomic_directory
from trimlab.runtime import cpu_flags
from trimlab.wheels import cache_dir

DIST = "llama-cpp-python"
CONVERTER_ENV = "TRIMLAB_LLAMA_CPP"
"""A llama.cpp checkout to take the converter from instead of the cached sdist files."""
MEMBERS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")
HOOK = Path(__file__).with_name("convert_hook.py")
INSTALL_HINT = (
    'pip install -c requirements.lock -e ".[deploy]" (or `make setup`); it builds '
    "llama-cpp-python from source, which needs a C++ compiler (Debian/Ubuntu: "
    "apt-get install build-essential cmake; macOS: xcode-select --install)"
)
QUANT_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}
"""llama.cpp's ``LLAMA_FTYPE_*`` numbers of the output types trimlab offers."""


def engine_version() -> str:
    """The installed llama-cpp-python version; ImportError saying how to install it."""
    try:
        return md.version(DIST)
    except md.PackageNotFoundError:
        raise ImportError(f"llama.cpp export needs {DIST}: {INSTALL_HINT}") from None


def converter_dir() -> Path:
    """Folder holding llama.cpp's ``convert_hf_to_gguf.py`` for the installed engine."""
    env = os.environ.get(CONVERTER_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir() / "llama.cpp" / engine_version()


def fetch_converter(force: bool = False) -> Path:
    """Put llama.cpp's converter, from the sdist of the installed version, in the cache.

    Runs ``pip download --no-deps --no-binary :all: llama-cpp-python==VERSION`` into a
    temporary folder and extracts only :data:`MEMBERS` of ``vendor/llama.cpp``.
    """
    dest = converter_dir()
    if (dest / MEMBERS[0]).is_file() and not force:
        return dest
    version = engine_version()
    print(f"trimlab: fetching llama.cpp's converter ({DIST} {version} sdist) into {dest}")
    with tempfile.TemporaryDirectory(prefix="trimlab-sdist-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--progress-bar", "off",
            "-d", tmp, f"{DIST}=={version}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise RuntimeError(
                f"could not download the {DIST} {version} sdist (pip exit code "
                f"{proc.returncode}); or point ${CONVERTER_ENV} at a llama.cpp checkout.\n{tail}"
            )
        with atomic_directory(dest) as out, tarfile.open(sdists[0]) as tar:
            prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
            chosen = [
                m
                for m in tar.getmembers()
                if m.name.startswith(prefix)
                and m.name[len(prefix) :].split("/")[0] in MEMBERS
                and (m.isfile() or m.isdir())
            ]
            for m in chosen:
                m.name = m.name[len(prefix) :]
            tar.extractall(out, members=chosen, filter="data")
    return dest


def convert(hf_dir: Path, out_file: Path, outtype: str = "f32") -> None:
    """Run llama.cpp's converter on the Hugging Face folder ``hf_dir``, writing ``out_file``.

    RuntimeError with the converter's last lines when it fails.
    """
    conv = converter_dir()
    if not (conv / MEMBERS[0]).is_file():
        raise RuntimeError(
            f"llama.cpp's converter is not in {conv}; run `python scripts/fetch_converter.py` "
            "(make setup does)"
        )
    cmd = [sys.executable, str(HOOK), str(conv), str(hf_dir)]
    cmd += ["--outfile", str(out_file), "--outtype", outtype]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"llama.cpp's converter failed on {hf_dir}:\n{tail}")


@contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence llama.cpp's log lines: those it routes through the ``llama-cpp-python``
    logger, and those it writes straight to file descriptor 2 (the quantizer's per-tensor
    warnings, the KV-cache notes), which a Jupyter kernel would show as cell output."""
    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:  # the Python-level path too: llama-cpp-python's log callback prints to sys.stderr
        with open(os.devnull, "w") as null, redirect_stderr(io.StringIO()):
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        log.setLevel(level)


def quantize(src: Path, dst: Path, kind: str, threads: int | None = None) -> None:
    """Quantize GGUF ``src`` into ``dst`` with llama.cpp's own quantizer (``q8_0``, ``q4_k_m``)."""
    import llama_cpp

    if kind not in QUANT_TYPES:
        raise ValueError(f"unknown quantization {kind!r}; choose one of {', '.join(QUANT_TYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[kind]
    params.nthread = threads or 0
    with quiet_engine():
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src} to {kind} (code {rc})")


def amx_cpu(flags: set[str] | None = None) -> bool:
    """Whether this CPU (or one with feature ``flags``) has AMX-INT8 tiles (Intel
    Sapphire Rapids and later)."""
    return "amx_int8" in (cpu_flags() if flags is None else flags)


@contextmanager
def _extra_buffer_types(on: bool) -> Iterator[None]:
    """Models loaded inside use llama.cpp's extra weight buffer types (AMX, CPU repack)
    only when ``on``: ``llama_cpp.Llama`` reads ``llama_model_default_params`` once, as
    it loads, and the Python class has no argument for ``use_extra_bufts``."""
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = on
        return p

    lib.llama_model_default_params = params
    try:
        yield
    finally:
        lib.llama_model_default_params = default


def load(
    path: str | os.PathLike,
    n_ctx: int = 512,
    threads: int | None = None,
    kv_f32: bool = False,
    extra_bufts: bool | None = None,
    **kwargs,
):
    """A ``llama_cpp.Llama`` for GGUF ``path``, quiet, with logits for every position.

    ``kv_f32`` keeps the KV cache in f32 rather than llama.cpp's default f16, for
    comparisons with an fp32 forward; ``kwargs`` go to ``llama_cpp.Llama``.
    ``extra_bufts``: llama.cpp's repacked weight buffers; by default off on CPUs with
    AMX, where the locked engine's AMX matmul crashes on quantized weights (a general
    protection fault in ``libggml-cpu``, seen here on Q8_0 and Q4_K_M; upstream
    ggml-org/llama.cpp#20824), and on everywhere else.
    """
    import llama_cpp

    if kv_f32:
        kwargs |= {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32}
    extra = not amx_cpu() if extra_bufts is None else extra_bufts
    with quiet_engine(), _extra_buffer_types(extra):
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            logits_all=True,
            verbose=False,
            **kwargs,
        )


# ----------------------------------------------------------------------------- running


def logits(llm, ids: list[int]) -> np.ndarray:
    """llama.cpp's logits at every position of ``ids`` (a fresh sequence), float32."""
    llm.reset()
    llm.eval(list(ids))
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def greedy(llm, ids: list[int], new_tokens: int, eos: int | None = None) -> list[int]:
    """Greedy continuation of ``ids`` (argmax each step, stopping after ``eos``)."""
    llm.reset()
    llm.eval(list(ids))
    out: list[int] = []
    for _ in range(new_tokens):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        if nxt == eos:
            break
        llm.eval([nxt])
    return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def choice_logliks(llm, encoded) -> list[list[float]]:
    """Summed log-likelihood of every continuation, per item, from llama.cpp's logits.

    ``encoded`` is :func:`trimlab.encoding.encode_items`'s output, so the token ids are
    those :func:`trimlab.evaluate.choice_logliks` scores. Each prompt runs once; every
    choice continues from its KV cache (the cache is cut back to the prompt between).
    """
    results = []
    for enc in encoded:
        llm.reset()
        llm.eval(list(enc.prompt))
        n = len(enc.prompt)
        last = np.array(llm.scores[n - 1], dtype=np.float32)
        row = []
        for cont in enc.conts:
            llm.n_tokens = n  # the next eval drops the cache beyond the prompt
            steps = [last]
            if len(cont) > 1:
                llm.eval(list(cont[:-1]))
                steps += list(np.array(llm.scores[n : n + len(cont) - 1], dtype=np.float32))
            lp = _log_softmax(np.stack(steps))
            row.append(float(lp[np.arange(len(cont)), cont].sum()))
        results.append(row)
    return results
