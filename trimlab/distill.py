"""Healing by knowledge distillation: the student learns the teacher's distributions.

The teacher is the full-fine-tuned model of the same setting (a saved model directory,
``TrimConfig.teacher``), frozen and in eval mode. The student is the model being trimmed.
Per micro-batch, :class:`KDLoss` is

``loss = T² · KL(p_T ‖ q_T) + w_ce · CE_answer + w_h · MSE(h_student, h_teacher)``

* ``KL(p_T ‖ q_T)``: the KL divergence from the teacher's next-token distribution to the
  student's, both at temperature ``T`` (softmax of logits / T), averaged over **every
  non-padding position** of prompt and answer (every position whose ``attention_mask`` is
  1). The ``T²`` factor keeps the gradient scale independent of ``T`` (Hinton, Vinyals
  and Dean, *Distilling the Knowledge in a Neural Network*, 2015). This is the logit
  distillation that heals depth-pruned models in NVIDIA's Minitron (Muralidharan et al.,
  arXiv 2407.14679; Sreenivas et al., arXiv 2408.11796).
* ``CE_answer``: the paper's loss, the cross-entropy of the answer (+ EOS) tokens, as
  :class:`trimlab.heal.AnswerCE` trains it (the model's own loss on the labels).
* ``MSE``: mean squared error between the student's and the teacher's final hidden state
  (the input of the LM head, after the final norm) over the same positions, as in
  layer-wise distillation (e.g. TinyBERT, Jiao et al., arXiv 1909.10351). Off by default.

**The teacher cache.** :class:`TeacherCache` runs the teacher once per training example
(alone, unpadded, so its output does not depend on which examples share a batch) and
keeps, per position, the ``k`` largest logits (float16) and their token ids (int16 or
int32), plus the final hidden state (float16) when the MSE term is on. Examples are keyed
by their token ids. After that, a training step costs only the student's forward and
backward. With the top-``k`` support the KL is taken against the teacher's distribution
**renormalised over its top k tokens**, ``p̂ = softmax(z_topk / T)``, with the student's
log-softmax over the **full** vocabulary:

``KL_k = Σ_{i ∈ topk} p̂_i (log p̂_i − log q_T,i)``

It is ≥ 0, zero only when the student puts all its mass on the teacher's top k in the
teacher's proportions, and with ``k`` = the vocabulary size it is exactly the full KL
(:class:`LiveTeacher`, which runs the teacher on every batch, computes the same loss
without a cache or truncation).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trimlab.checkpoint import META_FILE, load_trimmed
from trimlab.models import load_model
from trimlab.runtime import autocast, model_device

Targets = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]
"""Teacher targets of a batch's non-padding positions, in row-major order: logits
``[N, k]``, their token ids ``[N, k]`` (None: the whole vocabulary in order) and the final
hidden states ``[N, H]`` (None when not asked for)."""


# ----------------------------------------------------------------------------- the teacher


def load_teacher(path: str | Path, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` of the saved model directory ``path`` (what
    :func:`trimlab.checkpoint.save_trimmed` or ``save_pretrained`` writes), in float32,
    frozen and in eval mode on ``device``. ValueError for a missing or unreadable one."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"teacher {str(path)!r} is not a directory (a saved model folder)")
    if (folder / META_FILE).is_file():
        model, tokenizer = load_trimmed(folder, device=device)
    elif (folder / "config.json").is_file():
        model, tokenizer = load_model(str(folder), device=device, dtype="float32")
    else:
        raise ValueError(f"teacher {str(path)!r} holds no saved model (no config.json)")
    return frozen(model.float()), tokenizer


def check_teacher(
    teacher: PreTrainedModel,
    teacher_tokenizer: PreTrainedTokenizerBase | None,
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """ValueError when teacher and student do not share one vocabulary: the same LM-head
    size and, when the teacher has a tokenizer, the same token-to-id map."""
    sizes = [m.get_output_embeddings().weight.shape[0] for m in (teacher, student)]
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"the teacher's vocabulary has {sizes[0]} tokens, the student's {sizes[1]}: "
            "distillation needs the same tokenizer"
        )
    if teacher_tokenizer is not None and teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError("the teacher's tokenizer differs from the student's (another vocabulary)")


class _FinalHidden:
    """Captures the input of the LM head (the final hidden state) during a forward."""

    def __init__(self, model: PreTrainedModel, on: bool):
        self.model, self.on, self.value = model, on, None

    def __enter__(self):
        hook = lambda _mod, args: setattr(self, "value", args[0])  # noqa: E731
        head = self.model.get_output_embeddings()
        self.handle = head.register_forward_pre_hook(hook) if self.on else None
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()


def forward(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw
) -> tuple[object, torch.Tensor | None]:
    """``(outputs, final hidden state or None)``; ``hidden=True`` captures the latter."""
    hidden = kw.pop("hidden", False)
    with _FinalHidden(model, hidden) as cap:
        out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kw)
    return out, cap.value


def frozen(teacher: PreTrainedModel, device: torch.device | None = None) -> PreTrainedModel:
    """``teacher`` in eval mode without gradients, on ``device`` when given (the batch's:
    Trainer may have moved the student to an accelerator)."""
    teacher.eval().requires_grad_(False)
    if device is not None and model_device(teacher) != device:
        teacher.to(device)
    return teacher


class LiveTeacher:
    """Full-vocabulary targets from a teacher forward on every batch (no cache)."""

    def __init__(self, teacher: PreTrainedModel, hidden: bool = False, dtype: str = "fp32"):
        self.teacher, self.hidden, self.dtype = frozen(teacher), hidden, dtype

    @torch.no_grad()
    def targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Targets:
        frozen(self.teacher, input_ids.device)
        mask = attention_mask.bool()
        with autocast(self.dtype, model_device(self.teacher)):
            out, h = forward(self.teacher, input_ids, attention_mask, hidden=self.hidden)
        return out.logits[mask].float(), None, None if h is None else h[mask].float()


class TeacherCache:
    """The teacher's top-``k`` logits (and final hidden states) per training example,
    computed once, on first sight or by :meth:`fill`, kept on the CPU."""

    def __init__(
        self,
        teacher: PreTrainedModel,
        topk: int = 64,
        hidden: bool = False,
        dtype: str = "fp32",
        value_dtype: torch.dtype = torch.float16,
    ):
        self.teacher, self.hidden, self.dtype = frozen(teacher), hidden, dtype
        self.value_dtype = value_dtype
        vocab = teacher.get_output_embeddings().weight.shape[0]
        self.topk = min(int(topk), vocab)
        self.index_dtype = torch.int16 if vocab <= 2**15 else torch.int32
        self.entries: dict[bytes, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        self.seconds = 0.0

    @staticmethod
    def key(ids: torch.Tensor) -> bytes:
        """The example's key: its token ids (one unpadded row) as int32 bytes."""
        return ids.to("cpu", torch.int32).numpy().tobytes()

    @torch.no_grad()
    def _compute(self, ids: torch.Tensor) -> tuple:
        start = time.perf_counter()
        device = model_device(self.teacher)
        row = ids.to(device)[None]
        with autocast(self.dtype, device):
            out, h = forward(self.teacher, row, torch.ones_like(row), hidden=self.hidden)
        values, index = out.logits[0].float().topk(self.topk, dim=-1)
        entry = (
            values.to("cpu", self.value_dtype),
            index.to("cpu", self.index_dtype),
            None if h is None else h[0].to("cpu", self.value_dtype),
        )
        self.seconds += time.perf_counter() - start
        return entry

    def entry(self, ids: torch.Tensor) -> tuple:
        """The cached outputs of one example (computed now if unseen)."""
        key = self.key(ids)
        if key not in self.entries:
            self.entries[key] = self._compute(ids)
        return self.entries[key]

    def fill(self, examples: list[dict]) -> None:
        """Compute the outputs of every :func:`trimlab.train_data.build_examples` row."""
        for ex in examples:
            self.entry(torch.tensor(ex["input_ids"]))

    def targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Targets:
        frozen(self.teacher, input_ids.device)
        lengths = attention_mask.sum(-1).tolist()
        rows = [self.entry(input_ids[b, :n]) for b, n in enumerate(lengths)]
        device = input_ids.device
        values = torch.cat([r[0] for r in rows]).to(device, torch.float32)
        index = torch.cat([r[1] for r in rows]).to(device, torch.long)
        hidden = torch.cat([r[2] for r in rows]).to(device, torch.float32) if self.hidden else None
        return values, index, hidden

    @property
    def nbytes(self) -> int:
        """Memory held by the cached tensors."""
        return sum(t.nbytes for e in self.entries.values() for t in e if t is not None)

    def stats(self) -> dict:
        """``{"examples", "positions", "topk", "bytes", "seconds"}`` of the cache so far."""
        positions = sum(e[0].shape[0] for e in self.entries.values())
        return {
            "examples": len(self.entries),
            "positions": positions,
            "topk": self.topk,
            "bytes": self.nbytes,
            "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------- the loss


def kl_to_teacher(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_index: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over positions of ``T² · KL(p̂_T ‖ q_T)`` (see the module docstring).

    ``student_logits`` ``[N, V]``; ``teacher_logits`` ``[N, k]`` at the token ids
    ``teacher_index`` ``[N, k]`` (``None``: ``k = V``, all tokens in vocabulary order).
    """
    t = float(temperature)
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    if teacher_index is not None:
        log_q = log_q.gather(-1, teacher_index)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return kl.mean() * t * t


class KDLoss:
    """The distillation loss of one micro-batch, a :data:`trimlab.finetune.StepLoss`.

    ``source`` is a :class:`TeacherCache` or a :class:`LiveTeacher`. Returns the loss and
    its parts ``{"kl", "ce", "hidden"}`` (``kl`` before the weight, with the ``T²``)."""

    def __init__(
        self,
        source: TeacherCache | LiveTeacher,
        temperature: float = 1.0,
        ce_weight: float = 0.1,
        hidden_weight: float = 0.0,
    ):
        self.source, self.temperature = source, temperature
        self.ce_weight, self.hidden_weight = ce_weight, hidden_weight

    def __call__(self, model: PreTrainedModel, inputs: dict) -> tuple[torch.Tensor, dict]:
        ids, attn = inputs["input_ids"], inputs["attention_mask"]
        mask = attn.bool()
        t_logits, t_index, t_hidden = self.source.targets(ids, attn)
        out, hidden = forward(
            model, ids, attn, labels=inputs["labels"], hidden=self.hidden_weight > 0
        )
        kl = kl_to_teacher(out.logits[mask], t_logits, t_index, self.temperature)
        loss = kl + self.ce_weight * out.loss
        parts = {"kl": kl.detach(), "ce": out.loss.detach()}
        if self.hidden_weight > 0:
            mse = F.mse_loss(hidden[mask].float(), t_hidden)
            loss = loss + self.hidden_weight * mse
            parts["hidden"] = mse.detach()
        return loss, parts
