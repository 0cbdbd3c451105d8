"""Run llama.cpp's ``convert_hf_to_gguf.py`` with one hook: DeciLM with a GPT-2 BPE vocab.

Usage (what :func:`trimlab.llamacpp.convert` runs, in a subprocess)::

    python trimlab/convert_hook.py CONVERTER_DIR MODEL_DIR [convert_hf_to_gguf options]

The converter's ``DeciModel.set_vocab`` takes the GPT-2 BPE path only for 128256-token
vocabularies (Llama 3); any other size goes down the sentencepiece path of DeciLM-7B and
fails on a BPE ``tokenizer.json`` such as SmolLM2's ("Cannot find Llama BPE tokenizer").
:class:`DeciBPE` sends a folder without ``tokenizer.model`` to the converter's own
``_set_vocab_gpt2``, the path every BPE Llama takes; everything else is the converter's.

This file is run as a script, never imported by trimlab: the converter needs its own copy
of ``gguf-py`` first on ``sys.path``, newer than the ``gguf`` release trimlab reads with.
"""

from __future__ import annotations

import sys
from pathlib import Path


def install_hook():
    """Register :class:`DeciBPE` for ``DeciLMForCausalLM`` in the converter; return it."""
    from conversion.base import ModelBase
    from conversion.deci import DeciModel

    @ModelBase.register("DeciLMForCausalLM")
    class DeciBPE(DeciModel):
        """llama.cpp's DeciModel, reading a BPE ``tokenizer.json`` of any vocabulary size."""

        model_arch = DeciModel.model_arch  # the converter wants it on every class

        def set_vocab(self) -> None:
            if (Path(self.dir_model) / "tokenizer.model").is_file():
                super().set_vocab()  # sentencepiece: the converter's own choice
            else:
                self._set_vocab_gpt2()

    return DeciBPE


def main(argv: list[str]) -> None:
    """Convert with the hook installed: ``argv`` is ``[CONVERTER_DIR, MODEL_DIR, ...]``."""
    conv = Path(argv[0]).resolve()
    here = Path(__file__).resolve().parent  # trimlab/ itself: its modules would shadow others
    sys.path = [str(conv), str(conv / "gguf-py")] + [
        p for p in sys.path if Path(p or ".").resolve() != here
    ]
    import convert_hf_to_gguf  # the converter's module; imports its own gguf-py

    install_hook()
    sys.argv = [str(conv / "convert_hf_to_gguf.py"), *argv[1:]]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
