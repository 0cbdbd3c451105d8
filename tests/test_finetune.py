"""Fine-tuning: answer-only masking, learning, sparse updates, determinism, schedules."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DataCollatorForSeq2Seq, TrainerCallback, get_scheduler

from tests.test_scoring import ITEMS as SCORING_ITEMS
from trimlab import finetune as ft
from trimlab import optim, sparse, surgery
from trimlab.encoding import encode_items
from trimlab.evaluate import evaluate
from trimlab.prompts import build_prompt
from trimlab.tiny import TINY_ARCHS, tiny_model

ITEMS = SCORING_ITEMS + [
    {"question": q, "choices": c, "answer": a, "context": ctx, "subject": None}
    for q, c, a, ctx in [
        ("Which animal barks?", ["dog", "cat", "fish"], 0, None),
        ("What is 2 + 2?", ["three", "four", "five"], 1, None),
        ("Snow is?", ["cold", "hot"], 0, "Snow is frozen water."),
        ("Grass is?", ["blue", "green", "red"], 1, None),
    ]
]


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


class LRRecorder(TrainerCallback):
    """Records the learning rate each optimizer step runs with, and the one left after
    the last step (``final``)."""

    def __init__(self):
        self.lrs: list[float] = []
        self.final: float | None = None

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        self.final = optimizer.param_groups[0]["lr"]


def reference_lrs(name: str, lr: float, total: int, warmup: int) -> tuple[list[float], float]:
    """One plain ``get_scheduler`` run over ``total`` steps: the learning rate of every
    step, and the one left after the last step."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs, opt.param_groups[0]["lr"]


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize("use_context", [True, False])
def test_examples_mask_prompt_and_match_evaluation_tokens(use_context):
    _, tok = tiny_model("llama")
    examples = ft.build_examples(tok, ITEMS, use_context=use_context, max_length=512)
    encoded = encode_items(tok, ITEMS, use_context=use_context, max_length=512)
    eos = tok.eos_token_id
    for item, ex, enc in zip(ITEMS, examples, encoded):
        answer = enc.conts[item["answer"]]
        # exactly the tokens that evaluation scores, then EOS
        assert ex["input_ids"] == enc.prompt + answer + [eos]
        assert ex["labels"] == [-100] * len(enc.prompt) + answer + [eos]
        text = tok.decode(ex["input_ids"][: len(enc.prompt)])
        assert text == build_prompt(item, use_context).rstrip()
    no_eos = ft.build_examples(tok, ITEMS[:2], use_context, max_length=512, add_eos=False)
    assert [ex["input_ids"] for ex in no_eos] == [ex["input_ids"][:-1] for ex in examples[:2]]


def test_examples_left_truncate_prompt():
    _, tok = tiny_model("llama")
    full = ft.build_examples(tok, ITEMS[:1], max_length=512)[0]
    cut = ft.build_examples(tok, ITEMS[:1], max_length=30)[0]
    n_answer = sum(label != -100 for label in full["labels"])
    assert len(full["input_ids"]) > 30 and len(cut["input_ids"]) == 30
    assert cut["input_ids"] == full["input_ids"][-30:]  # the prompt lost its head
    assert sum(label != -100 for label in cut["labels"]) == n_answer
    with pytest.raises(ValueError, match="max_length"):
        ft.build_examples(tok, ITEMS[:1], max_length=2)


def check_right_padded(batch, examples, pad: int) -> None:
    for b, ex in enumerate(examples):
        n = len(ex["input_ids"])
        assert batch["input_ids"][b, :n].tolist() == ex["input_ids"]
        assert batch["labels"][b, :n].tolist() == ex["labels"]
        assert (batch["input_ids"][b, n:] == pad).all()
        assert (batch["labels"][b, n:] == -100).all()
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (batch["labels"].shape[1] - n)
    assert all(v.dtype == torch.long for v in batch.values())


def test_collator_pads_ids_mask_and_labels():
    _, tok = tiny_model("llama")
    examples = ft.build_examples(tok, ITEMS[:3], max_length=512)
    collate = ft.answer_collator(tok)
    assert isinstance(collate, DataCollatorForSeq2Seq)
    batch = collate(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[1] == max(len(ex["input_ids"]) for ex in examples)
    check_right_padded(batch, examples, tok.pad_token_id)
    padded = ft.answer_collator(tok, pad_to_multiple_of=8)(examples)
    assert padded["input_ids"].shape[1] % 8 == 0
    check_right_padded(padded, examples, tok.pad_token_id)


def test_collator_pads_right_with_the_pad_fallback_on_any_tokenizer():
    _, tok = tiny_model("llama")
    examples = ft.build_examples(tok, ITEMS[:3], max_length=512)
    odd = copy.deepcopy(tok)
    odd.padding_side = "left"
    odd.pad_token = None
    assert ft.pad_id(odd) == odd.eos_token_id  # pad -> eos -> 0
    check_right_padded(ft.answer_collator(odd)(examples), examples, odd.eos_token_id)
    assert odd.padding_side == "left" and odd.pad_token is None  # the caller's is untouched


# --------------------------------------------------------------------------- training


def test_loss_decreases_and_answer_loglik_rises():
    model, tok = tiny_model("llama", seed=1)
    loss0 = ft.answer_loss(model, tok, ITEMS)
    ll0 = evaluate(model, tok, ITEMS, batch_size=8)["ll"]
    out = ft.finetune(model, tok, ITEMS, steps=30, batch_size=8, lr=1e-2, logging_steps=5)
    loss1 = ft.answer_loss(model, tok, ITEMS)
    ll1 = evaluate(model, tok, ITEMS, batch_size=8)["ll"]
    assert loss1 < 0.5 * loss0
    assert ll1 > ll0 + 5
    assert out["history"][-1]["loss"] < out["history"][0]["loss"]
    assert [row["step"] for row in out["history"]] == [5, 10, 15, 20, 25, 30]
    # 16 items, 8 per step: 30 steps are 15 epochs, every example seen 15 times
    answer_tokens = sum(
        sum(x != -100 for x in ex["labels"]) for ex in ft.build_examples(tok, ITEMS)
    )
    assert out["steps"] == 30 and out["global_step"] == 30
    assert out["examples_seen"] == 240
    assert out["tokens"] == 15 * answer_tokens
    assert out["train_loss"] == pytest.approx(sum(r["loss"] for r in out["history"]) / 6)
    assert not model.training and model.config.use_cache


def test_frozen_parameters_stay_bit_identical(tmp_path):
    model, tok = tiny_model("llama", seed=2)
    sparse.freeze(model, ["1.mlp", "3.attn"])
    before = params(model)
    ft.finetune(model, tok, ITEMS, steps=3, batch_size=4, lr=1e-2, output_dir=str(tmp_path))
    after = params(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same != (name in trainable), name
    assert list(tmp_path.iterdir()) == []  # Trainer saved nothing


def test_same_seed_same_weights():
    runs = []
    for seed in (0, 0, 1):
        model, tok = tiny_model("llama", seed=4)
        ft.finetune(model, tok, ITEMS, steps=4, batch_size=4, lr=1e-2, seed=seed, grad_accum=2)
        runs.append(params(model))
    assert all(torch.equal(runs[0][n], runs[1][n]) for n in runs[0])
    assert not all(torch.equal(runs[0][n], runs[2][n]) for n in runs[0])


def test_no_trainable_parameters_and_bad_arguments():
    model, tok = tiny_model("llama")
    with pytest.raises(ValueError, match="steps"):
        ft.finetune(model, tok, ITEMS, steps=0)
    with pytest.raises(ValueError, match="total_steps"):
        ft.finetune(model, tok, ITEMS, steps=5, lr_schedule="linear", global_step=8, total_steps=10)
    with pytest.raises(ValueError, match="lr_schedule"):
        ft.finetune(model, tok, ITEMS, steps=1, lr_schedule="step")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ft.finetune(model, tok, ITEMS, steps=1)


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "ours, theirs",
    [("constant", "constant_with_warmup"), ("linear", "linear"), ("cosine", "cosine")],
)
@pytest.mark.parametrize("split", [0, 1, 7, 19])
def test_global_scheduler_continues_one_transformers_schedule(ours, theirs, split):
    """Steps 0..split-1 in one round, split..T-1 in the next (global_step=split): the same
    learning rates as one get_scheduler run over T steps, ending at 0 for the decays."""
    lr, total, warmup = 0.5, 20, 3
    expected, final = reference_lrs(theirs, lr, total, warmup)
    got = []
    for start, stop in ((0, split), (split, total)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
        sched = optim.global_scheduler(opt, ours, start, total, warmup)
        for _ in range(start, stop):
            got.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    assert got == expected  # the same transformers formulas, bit for bit
    assert opt.param_groups[0]["lr"] == final
    assert final == (lr if ours == "constant" else 0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        optim.global_scheduler(opt, "step")


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_continues_across_rounds_with_a_drop(schedule):
    model, tok = tiny_model("llama", seed=5)
    lr, total = 1e-2, 10
    first, second = LRRecorder(), LRRecorder()
    out1 = ft.finetune(
        model, tok, ITEMS, steps=6, batch_size=4, lr=lr, lr_schedule=schedule,
        total_steps=total, warmup_steps=2, callbacks=[first],
    )  # fmt: skip
    surgery.drop(model, "2.mlp")  # its parameters vanish; round 2 has a fresh AdamW
    out2 = ft.finetune(
        model, tok, ITEMS, steps=4, batch_size=4, lr=lr, lr_schedule=schedule,
        total_steps=total, warmup_steps=2, global_step=out1["global_step"], callbacks=[second],
    )  # fmt: skip
    expected, final = reference_lrs(schedule, lr, total, 2)
    assert first.lrs + second.lrs == pytest.approx(expected, rel=1e-12, abs=0)
    assert first.final == pytest.approx(second.lrs[0], rel=1e-12)  # round 2 picks up there
    assert second.final == final == 0.0  # the schedule has decayed to 0 after its last step
    if schedule == "linear":
        assert second.lrs[0] == pytest.approx(first.lrs[-1] - lr / (total - 2))
    assert out1["lr_last"] == pytest.approx(first.lrs[-1])
    assert out2["lr_first"] == pytest.approx(second.lrs[0])
    assert out2["global_step"] == total
    assert out2["history"][-1]["step"] == total


def test_constant_schedule_is_default():
    model, tok = tiny_model("llama")
    rec = LRRecorder()
    ft.finetune(model, tok, ITEMS, steps=3, batch_size=8, lr=3e-3, callbacks=[rec])
    assert rec.lrs == pytest.approx([3e-3] * 3)


# --------------------------------------------------------------------------- families


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_other_families_train(arch):
    model, tok = tiny_model(arch, seed=6)
    loss0 = ft.answer_loss(model, tok, ITEMS)
    sparse.freeze(model, sparse.select_trainable({n: 0.0 for n in sparse.units(model)}, 0.5))
    out = ft.finetune(model, tok, ITEMS, steps=10, batch_size=8, lr=1e-2)
    assert out["steps"] == 10 and out["train_loss"] == out["train_loss"]  # not NaN
    assert ft.answer_loss(model, tok, ITEMS) < loss0
    assert not model.training


# --------------------------------------------------------------------------- other losses


def test_a_step_loss_equal_to_the_answer_ce_trains_the_same_weights():
    """The ``step_loss`` hook (used by distillation) changes the loss and nothing else:
    with one micro-batch per step, the model's own answer CE through the hook gives the
    weights of the default path (which runs the LM head on answer positions only, so
    they agree to float rounding)."""

    def own_ce(model, inputs):
        out = model(**inputs, use_cache=False)
        return out.loss, {"ce": out.loss.detach()}

    runs = []
    for hook in (None, own_ce):
        model, tok = tiny_model("llama", seed=4)
        out = ft.finetune(model, tok, ITEMS, steps=3, batch_size=4, lr=1e-2, step_loss=hook)
        runs.append((params(model), out))
    (a, plain), (b, hooked) = runs
    assert all(torch.allclose(a[n], b[n], atol=1e-6, rtol=0) for n in a)
    assert "loss_parts" not in plain and hooked["train_loss"] == pytest.approx(plain["train_loss"])
    assert hooked["loss_parts"]["ce"] == pytest.approx(hooked["train_loss"], rel=1e-6)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_answer_ce_on_answer_positions_equals_the_models_own_loss(arch):
    """train_data.answer_ce with the LM head on answer positions only (a boolean
    ``logits_to_keep``) is transformers' causal-LM loss, value and gradients, for every
    family (Gemma 2's final logit soft-capping included); the LM head sees only the
    labelled positions."""
    from trimlab.train_data import answer_ce, answer_collator, answer_positions, build_examples

    model, tok = tiny_model(arch, seed=5)
    batch = answer_collator(tok)(build_examples(tok, ITEMS[:4], True, 96))
    labels = batch["labels"]
    own = model(**batch, use_cache=False).loss
    own.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    rows = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _m, args: rows.append(args[0].shape[0])
    )
    keep = answer_positions(labels)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    out = model(**inputs, logits_to_keep=keep, use_cache=False)
    hook.remove()
    ours = answer_ce(out, labels)
    ours.backward()
    assert rows == [int(labels[:, 1:].ne(-100).sum())]  # answer (+ EOS) tokens only
    assert ours.item() == pytest.approx(own.item(), rel=1e-6)
    n = int(labels.ne(-100).sum())
    assert answer_ce(out, labels, torch.tensor(n)).item() == pytest.approx(own.item(), rel=1e-6)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[name], atol=1e-6), name
