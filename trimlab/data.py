"""Datasets, domains and the fixed train / calib / test splits of the lab.

TrimLLM (arXiv 2412.11242, Sec. 4) fine-tunes and trims one model per *domain* and
checks it on held-out questions of that domain. This module gives every dataset of
the lab a name, groups them into domains, and cuts each into three splits that never
overlap:

* ``train`` -- fine-tuning items (the paper's domain training set),
* ``calib`` -- calibration items used to score sub-layers before each drop (Eq. 3, 4),
* ``test``  -- held-out items for the accuracy tables.

Items are plain dicts with the keys ``id, question, choices, answer, context,
subject`` (``answer`` is the 0-based index into ``choices``); turn one into a prompt
with :func:`trimlab.prompts.build_prompt`.

Where the rows come from: a local mirror when ``TRIMLAB_DATA_DIR`` (or the
``data_dir`` argument) names one, laid out as ``<dir>/<source>/<split>.jsonl``;
otherwise the Hugging Face hub through ``datasets.load_dataset``. Both paths apply
the same recipe to the same source split, so they give the same splits.

How splits are cut: a recipe maps each split to a spec such as ``"test"`` (the whole
source split) or ``"validation[40%:50%]"`` (the items of the source split whose
*content hash* falls in that slice of [0, 1)). The hash is SHA-256 of ``SPLIT_SEED``
and the item's normalised question + choices, so it does not depend on file order,
on item ids, or on ``PYTHONHASHSEED``, and duplicated questions land in one split.
Then, as a leak guard, ``calib`` drops items that also occur in ``test``, and
``train`` drops items that also occur in ``calib`` or ``test`` (same question and
choices, or same question and correct answer). See ``data/README.md`` for the
recipes and the measured sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA_ENV = "TRIMLAB_DATA_DIR"
SPLITS = ("train", "calib", "test")
SPLIT_SEED = 1234
"""Seed of the content hash that carves splits."""
SCIQ_SEED = 1234
"""Seed of SciQ's per-item option shuffle (the mirror's convert.py uses the same)."""
KEYS = ("id", "question", "choices", "answer", "context", "subject")

Item = dict[str, Any]
RowMapper = Callable[..., Item]


@dataclass(frozen=True)
class Dataset:
    """One registered multiple-choice dataset and how to cut it into splits."""

    name: str
    domain: str | None
    recipe: Mapping[str, str]
    """trimlab split -> spec ``"src"``, ``"src1+src2"`` or ``"src[lo%:hi%]"``."""
    licence: str
    source: str | None = None
    """Folder of the local mirror (``<data_dir>/<source>/<src>.jsonl``)."""
    subjects: tuple[str, ...] = ()
    """Keep only items whose ``subject`` is one of these (empty: keep all)."""
    has_context: bool = False
    """Whether items carry a passage (used only when ``profile.use_context``)."""
    related: bool = False
    """Eval-only related-domain set (not trained on by :func:`load_domain`)."""
    hub: str | None = None
    """Hugging Face hub id used when no data dir is set."""
    hub_configs: tuple[str | None, ...] = (None,)
    hub_splits: Mapping[str, str] = field(default_factory=dict)
    """Source split -> hub split name, where they differ."""
    from_hub: RowMapper | None = None
    """Pure ``(row, index, split, config) -> item`` for one hub row."""
    hub_select: Callable[[list[Item], str], list[Item]] | None = None
    """Optional ``(items, source_split) -> items`` applied after mapping."""
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Source split -> JSONL files, for user datasets (no mirror, no hub)."""

    def splits(self) -> tuple[str, ...]:
        """The trimlab splits this dataset provides."""
        return tuple(s for s in SPLITS if s in self.recipe)


# ----------------------------------------------------------------- item helpers


def _norm(text: object) -> str:
    return " ".join(str(text).lower().split())


def _clean(text: object) -> str | None:
    text = None if text is None else str(text).strip()
    return text or None


def item_key(item: Mapping[str, Any]) -> str:
    """Identity of an item: its normalised question and (sorted) choices."""
    return "\x1f".join([_norm(item["question"]), *sorted(_norm(c) for c in item["choices"])])


def answer_key(item: Mapping[str, Any]) -> str:
    """Its normalised question and correct answer (catches re-worded distractors)."""
    return _norm(item["question"]) + "\x1e" + _norm(item["choices"][item["answer"]])


def _unit(item: Mapping[str, Any]) -> float:
    digest = hashlib.sha256(f"{SPLIT_SEED}:{item_key(item)}".encode()).hexdigest()
    return int(digest[:16], 16) / 2**64


def make_item(
    id: str,
    question: str,
    choices: Sequence[str],
    answer: int,
    context: str | None = None,
    subject: str | None = None,
) -> Item:
    """An item in the lab schema (stripped text, empty context -> ``None``)."""
    return {
        "id": str(id),
        "question": str(question).strip(),
        "choices": [str(c).strip() for c in choices],
        "answer": answer,
        "context": _clean(context),
        "subject": _clean(subject),
    }


def validate_item(item: Mapping[str, Any], where: str) -> Item:
    """Check one row and return it in the schema; ``ValueError`` names ``where``."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(item).__name__}")
    missing = [k for k in ("question", "choices", "answer") if k not in item]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    q, choices, answer = item["question"], item["choices"], item["answer"]
    if not isinstance(q, str) or not q.strip():
        raise ValueError(f"{where}: question must be a non-empty string")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"{where}: choices must be a non-empty list of strings")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ValueError(f"{where}: answer {answer!r} is not an index into {len(choices)} choices")
    for k in ("context", "subject"):
        if item.get(k) is not None and not isinstance(item[k], str):
            raise ValueError(f"{where}: {k} must be a string or null")
    out = {k: item.get(k) for k in KEYS}
    out["choices"] = list(choices)
    out["id"] = str(item.get("id", where))
    return out


# ------------------------------------------------- hub row mappers (pure functions)


def sciq_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """allenai/sciq row -> item; options shuffled exactly as the mirror's convert.py."""
    id_ = f"sciq-{split}-{index:05d}"
    correct = row["correct_answer"].strip()
    options = [correct] + [row[f"distractor{k}"].strip() for k in (1, 2, 3)]
    random.Random(f"{SCIQ_SEED}:{id_}").shuffle(options)
    return make_item(id_, row["question"], options, options.index(correct), row.get("support"))


def piqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """baber/piqa row (goal, sol1, sol2, label) -> item."""
    return make_item(
        f"piqa-{split}-{index:05d}", row["goal"], [row["sol1"], row["sol2"]], int(row["label"])
    )


def arc_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """allenai/ai2_arc row -> item (labels may be A-E or 1-5)."""
    labels = list(row["choices"]["label"])
    return make_item(
        row["id"], row["question"], row["choices"]["text"], labels.index(row["answerKey"])
    )


def medmcqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """openlifescienceai/medmcqa row (opa..opd, cop 0-3) -> item."""
    choices = [row[k] for k in ("opa", "opb", "opc", "opd")]
    subject = row.get("subject_name")
    return make_item(
        f"medmcqa-{row['id']}", row["question"], choices, int(row["cop"]), None, subject
    )


def mmlu_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """cais/mmlu row (question, subject, choices, answer) -> item."""
    subject = row.get("subject") or config
    return make_item(
        f"mmlu-{subject}-{split}-{index:04d}",
        row["question"],
        row["choices"],
        int(row["answer"]),
        None,
        subject,
    )


PUBMEDQA_CHOICES = ("yes", "no", "maybe")


def pubmedqa_row(row: Mapping[str, Any], index: int, split: str, config: str | None = None) -> Item:
    """qiaojin/PubMedQA pqa_labeled row -> item (abstract sections joined by newlines)."""
    context = "\n".join(c.strip() for c in row["context"]["contexts"])
    answer = PUBMEDQA_CHOICES.index(row["final_decision"])
    return make_item(f"pubmedqa-{row['pubid']}", row["question"], PUBMEDQA_CHOICES, answer, context)


def pubmedqa_official_split(items: list[Item]) -> dict[str, list[Item]]:
    """The official PQA-L 500/500 split (pubmedqa/preprocess/split_dataset.py, seed 0).

    The hub has the 1,000 labelled items as one split; this re-derives which 500 are
    the official test set. It needs the items in the order of ``ori_pqal.json`` and
    returns both halves in that order.
    """
    rng = random.Random(0)
    by_label: dict[str, list[str]] = {c: [] for c in PUBMEDQA_CHOICES}
    for it in items:
        by_label[it["choices"][it["answer"]]].append(it["id"])
    halves: list[list[str]] = [[], []]
    for ids in by_label.values():
        rng.shuffle(ids)
        cut = math.ceil(len(ids) / 2)
        halves[0] += ids[:cut]
        halves[1] += ids[cut:]
    if len(halves[1]) != len(halves[0]):  # as the original: move one random item over
        halves[1].append(halves[0].pop(halves[0].index(rng.choice(halves[0]))))
    test = set(halves[1])
    return {
        "train": [it for it in items if it["id"] not in test],
        "test": [it for it in items if it["id"] in test],
    }


def _pubmedqa_select(items: list[Item], split: str) -> list[Item]:
    return pubmedqa_official_split(items)[split]


# ---------------------------------------------------------------------- registry


def carve(source: str, test: float = 0.4, calib: float = 0.1) -> dict[str, str]:
    """Recipe that cuts one source pool by content hash: test, calib, then train."""
    if not (0 < test and 0 <= calib and test + calib < 1):
        raise ValueError(f"need 0 < test, 0 <= calib and test + calib < 1, got {test}, {calib}")
    a, b = f"{100 * test:g}", f"{100 * (test + calib):g}"
    return {
        "train": f"{source}[{b}%:100%]",
        "calib": f"{source}[{a}%:{b}%]",
        "test": f"{source}[0%:{a}%]",
    }


SAME = {"train": "train", "calib": "validation", "test": "test"}
MMLU_LAW = ("professional_law", "international_law", "jurisprudence")
MMLU_ECON = ("high_school_macroeconomics", "high_school_microeconomics", "econometrics")
CC_BY_SA = "CC BY-SA 4.0 (share-alike)"

_BUILTIN = [
    Dataset(
        "sciq", "science", SAME, "CC BY-NC 3.0 (non-commercial)", source="sciq",
        has_context=True, hub="allenai/sciq", from_hub=sciq_row,
    ),
    Dataset(
        "piqa", "commonsense", carve("validation"), "AFL-3.0", source="piqa",
        hub="baber/piqa", from_hub=piqa_row,
    ),
    Dataset(
        "arc_easy", "commonsense", SAME, CC_BY_SA, source="arc_easy",
        hub="allenai/ai2_arc", hub_configs=("ARC-Easy",), from_hub=arc_row,
    ),
    Dataset(
        "arc_challenge", None, {"calib": "validation", "test": "test"}, CC_BY_SA,
        source="arc_challenge", hub="allenai/ai2_arc", hub_configs=("ARC-Challenge",),
        from_hub=arc_row,
    ),
    Dataset(
        "medmcqa", "medical", carve("validation"), "MIT", source="medmcqa",
        hub="openlifescienceai/medmcqa", from_hub=medmcqa_row,
    ),
    Dataset(
        "pubmedqa", "medical",
        {"train": "train[20%:100%]", "calib": "train[0%:20%]", "test": "test"}, "MIT",
        source="pubmedqa", has_context=True, related=True,
        hub="qiaojin/PubMedQA", hub_configs=("pqa_labeled",),
        hub_splits={"train": "train", "test": "train"},  # the hub has all 1,000 in one split
        from_hub=pubmedqa_row, hub_select=_pubmedqa_select,
    ),
    Dataset(
        "mmlu_law", "legal", carve("validation+test"), "MIT", source="mmlu",
        subjects=MMLU_LAW, hub="cais/mmlu", hub_configs=MMLU_LAW, from_hub=mmlu_row,
    ),
    Dataset(
        "mmlu_econ", "finance", carve("validation+test"), "MIT", source="mmlu",
        subjects=MMLU_ECON, hub="cais/mmlu", hub_configs=MMLU_ECON, from_hub=mmlu_row,
    ),
]  # fmt: skip
DATASETS: dict[str, Dataset] = {d.name: d for d in _BUILTIN}
"""Dataset name -> :class:`Dataset` (TrimLLM Sec. 4 datasets and stand-ins)."""
DOMAINS: dict[str, list[str]] = {}
"""Domain -> the datasets :func:`load_domain` trains and tests on."""
RELATED: dict[str, list[str]] = {}
"""Domain -> eval-only related-domain datasets (PubMedQA for medical, Table 4)."""


def _rebuild_domains() -> None:
    DOMAINS.clear()
    RELATED.clear()
    for d in DATASETS.values():
        if d.domain is not None:
            (RELATED if d.related else DOMAINS).setdefault(d.domain, []).append(d.name)


_rebuild_domains()


def dataset_names(domain: str | None = None) -> list[str]:
    """All registered dataset names, or those of one domain (related ones included)."""
    if domain is None:
        return list(DATASETS)
    if domain not in DOMAINS and domain not in RELATED:
        raise ValueError(f"unknown domain {domain!r}; known domains: {sorted(DOMAINS)}")
    return DOMAINS.get(domain, []) + RELATED.get(domain, [])


def get_dataset(name: str) -> Dataset:
    """The registry entry of a dataset."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {list(DATASETS)}")
    return DATASETS[name]


def domain_of(name: str) -> str | None:
    """The domain of a dataset (``None`` for unassigned ones such as arc_challenge)."""
    return get_dataset(name).domain


def licence(name: str) -> str:
    """The licence of a dataset, or of every dataset of a domain (joined by '; ')."""
    names = DOMAINS[name] + RELATED.get(name, []) if name in DOMAINS else [name]
    return "; ".join(dict.fromkeys(get_dataset(n).licence for n in names))


def register_dataset(
    name: str,
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, Any],
    domain: str | None = None,
    *,
    test: float = 0.4,
    calib: float = 0.1,
    recipe: Mapping[str, str] | None = None,
    licence: str = "user-provided: check before sharing",
    has_context: bool = False,
    related: bool = False,
    overwrite: bool = False,
) -> Dataset:
    """Register your own JSONL file(s) (the lab schema) as a dataset ("bring your own domain").

    ``path_or_paths`` is one file or a list of files, pooled and carved by content hash
    into ``test`` (fraction ``test``), ``calib`` (fraction ``calib``) and ``train`` (the
    rest); or a mapping ``{"train": path, "test": path, ...}`` of ready-made splits.
    ``recipe`` overrides the cut (specs over the source names ``all`` or the mapping
    keys). Rows need ``question``, ``choices``, ``answer``; ``id``, ``context`` and
    ``subject`` are optional.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if name in DOMAINS or name in RELATED or name == domain or domain in DATASETS:
        raise ValueError(f"a dataset and a domain cannot share a name ({name!r} / {domain!r})")
    if name in DATASETS and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True)")
    if isinstance(path_or_paths, Mapping):
        files = {src: _paths(p) for src, p in path_or_paths.items()}
        recipe = dict(recipe or {s: s for s in files if s in SPLITS})
    else:
        files = {"all": _paths(path_or_paths)}
        recipe = dict(recipe or carve("all", test, calib))
    for split, spec in recipe.items():
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} in recipe; valid splits: {list(SPLITS)}")
        missing = [s for s in _parse(spec)[0] if s not in files]
        if missing:
            raise ValueError(f"recipe {split!r}: {spec!r} names unknown source(s) {missing}")
    if not recipe:
        raise ValueError(f"no split of {list(SPLITS)} in {list(files)}; pass recipe=")
    ds = Dataset(
        name, domain, recipe, licence, has_context=has_context, related=related, files=files
    )
    DATASETS[name] = ds
    _rebuild_domains()
    return ds


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the registry (and from its domain)."""
    get_dataset(name)
    del DATASETS[name]
    _rebuild_domains()


def _paths(p: Any) -> tuple[str, ...]:
    paths = (p,) if isinstance(p, (str, os.PathLike)) else tuple(p)
    if not paths:
        raise ValueError("no data file given")
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"data file {str(path)!r} does not exist")
    return tuple(str(path) for path in paths)


# ----------------------------------------------------------------------- loading

_SPEC = re.compile(r"^([\w.-]+(?:\+[\w.-]+)*)(?:\[(\d+(?:\.\d+)?)%:(\d+(?:\.\d+)?)%\])?$")
_CACHE: dict[tuple, list[Item]] = {}


def _parse(spec: str) -> tuple[list[str], float, float]:
    m = _SPEC.match(spec.replace(" ", ""))
    if not m:
        raise ValueError(f"bad split spec {spec!r}; expected 'src', 'a+b' or 'src[lo%:hi%]'")
    lo, hi = (float(m[2]) / 100, float(m[3]) / 100) if m[2] else (0.0, 1.0)
    return m[1].split("+"), lo, hi


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir``, else ``$TRIMLAB_DATA_DIR``, else ``None`` (use the hub)."""
    where = "data_dir argument" if data_dir is not None else f"${DATA_ENV}"
    raw = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if raw is None:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise ValueError(f"data dir {str(path)!r} (from the {where}) does not exist")
    return path


def _read_jsonl(path: Path) -> list[Item]:
    stat = path.stat()
    key = ("file", str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        rows = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{i}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
                if isinstance(row, dict) and "id" not in row:
                    row["id"] = f"{path.stem}-{i:05d}"
                rows.append(validate_item(row, where))
        _CACHE[key] = rows
    return _CACHE[key]


def _load_hf(path: str, config: str | None, split: str) -> Any:
    """``datasets.load_dataset`` (imported lazily; tests replace this function)."""
    import datasets

    return datasets.load_dataset(path, config, split=split)


def _from_hub(ds: Dataset, src: str) -> list[Item]:
    key = ("hub", ds.name, ds.hub, src)
    if key not in _CACHE:
        hub_split = ds.hub_splits.get(src, src)
        items = []
        for config in ds.hub_configs:
            try:
                rows = _load_hf(ds.hub, config, hub_split)
            except Exception as e:
                raise RuntimeError(
                    f"could not load dataset {ds.name!r} from the Hugging Face hub "
                    f"({ds.hub}, config={config}, split={hub_split}): {type(e).__name__}: {e}. "
                    f"Set {DATA_ENV} to a local mirror (see data/README.md)."
                ) from e
            for i, row in enumerate(rows):
                items.append(validate_item(ds.from_hub(row, i, src, config), f"{ds.hub}:{i}"))
        if ds.hub_select is not None:
            items = ds.hub_select(items, src)
        _CACHE[key] = items
    return _CACHE[key]


def _source(ds: Dataset, src: str, data_dir: Path | None) -> list[Item]:
    """All items of one source split (subject filter applied)."""
    if src in ds.files:
        items = [it for p in ds.files[src] for it in _read_jsonl(Path(p))]
    elif data_dir is not None and ds.source is not None:
        path = data_dir / ds.source / f"{src}.jsonl"
        if not path.is_file():
            raise ValueError(f"dataset {ds.name!r}: split file {str(path)!r} is missing")
        items = _read_jsonl(path)
    elif ds.hub is not None and ds.from_hub is not None:
        items = _from_hub(ds, src)
    else:
        raise ValueError(f"dataset {ds.name!r} has no source for {src!r}; set {DATA_ENV}")
    return [it for it in items if not ds.subjects or it["subject"] in ds.subjects]


def _raw_split(ds: Dataset, split: str, data_dir: Path | None) -> list[Item]:
    sources, lo, hi = _parse(ds.recipe[split])
    items = [it for src in sources for it in _source(ds, src, data_dir)]
    if (lo, hi) == (0.0, 1.0):
        return items
    return [it for it in items if lo <= _unit(it) < hi]


def _split(ds: Dataset, split: str, data_dir: Path | None) -> list[Item]:
    """One split of one dataset, leak-filtered against the splits above it."""
    if split not in ds.recipe:
        raise ValueError(
            f"dataset {ds.name!r} has no {split!r} split; available: {list(ds.splits())}"
        )
    above = [s for s in SPLITS[SPLITS.index(split) + 1 :] if s in ds.recipe]
    seen = set()
    for s in above:
        for it in _raw_split(ds, s, data_dir):
            seen.update((item_key(it), answer_key(it)))
    items = _raw_split(ds, split, data_dir)
    items = [it for it in items if item_key(it) not in seen and answer_key(it) not in seen]
    return [{**it, "choices": list(it["choices"])} for it in items]


def sample(items: list[Item], n: int | None, seed: int = 0) -> list[Item]:
    """``n`` items chosen by a seeded shuffle, kept in their original order.

    Samples are nested (the ``n`` items are a subset of the ``n + 1`` items for the same
    seed). ``None`` or ``n >= len(items)`` returns all items.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    if n is None or n >= len(items):
        return list(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return [items[i] for i in sorted(order[:n])]


def load_domain(
    name: str,
    split: str,
    n: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> list[Item]:
    """Items of one split of a dataset or a domain (TrimLLM Sec. 4: one domain per run).

    ``name`` is a dataset (``"sciq"``) or a domain (``"commonsense"`` = piqa then
    arc_easy, in registry order; related eval-only sets such as pubmedqa are loaded
    by their own name). ``split`` is ``train``, ``calib`` or ``test``. ``n`` keeps a
    seeded sample of ``n`` items (see :func:`sample`). Rows come from ``data_dir``,
    else ``$TRIMLAB_DATA_DIR``, else the Hugging Face hub.

    Each item is a new dict with exactly the keys ``id, question, choices, answer,
    context, subject``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    if n is not None:
        sample([], n)  # validate n before touching any data
    if name in DATASETS:
        names = [name]
    elif name in DOMAINS:
        names = DOMAINS[name]
    else:
        raise ValueError(
            f"unknown dataset or domain {name!r}; datasets: {list(DATASETS)}; "
            f"domains: {list(DOMAINS)}"
        )
    root = resolve_data_dir(data_dir)
    items = [it for nm in names for it in _split(DATASETS[nm], split, root)]
    return sample(items, n, seed)


def split_sizes(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Number of items per available split of a dataset or domain."""
    names = DOMAINS[name] if name in DOMAINS else [get_dataset(name).name]
    splits = [s for s in SPLITS if all(s in DATASETS[nm].recipe for nm in names)]
    return {s: len(load_domain(name, s, data_dir=data_dir)) for s in splits}
