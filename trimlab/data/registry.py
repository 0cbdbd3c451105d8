"""The dataset registry: every dataset of the lab by name, grouped into domains.

TrimLLM (arXiv 2412.11242, Sec. 4) fine-tunes and trims one model per *domain* and
checks it on held-out questions of that domain (and, in Table 4, on a related one).
A :class:`Dataset` says where a dataset's rows come from (mirror folder, hub id, or the
user's JSONL files), how its splits are cut (a recipe, see :mod:`trimlab.data.splits`)
and its licence. :data:`DATASETS` holds the built-in ones; :data:`DOMAINS` and
:data:`RELATED` group them by domain. :func:`register_dataset` adds your own JSONL
files as a dataset ("bring your own domain").

The legal and finance domains are MMLU stand-ins (three subjects each): the paper's
legal and finance benchmarks were not available as plain files (see ``data/README.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trimlab.data.hub import (
    arc_row,
    medmcqa_row,
    mmlu_row,
    piqa_row,
    pubmedqa_row,
    pubmedqa_select,
    sciq_row,
)
from trimlab.data.schema import Item, RowMapper
from trimlab.data.splits import SPLITS, carve, parse_spec


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


SAME = {"train": "train", "calib": "validation", "test": "test"}
MMLU_LAW = ("professional_law", "international_law", "jurisprudence")
MMLU_ECON = ("high_school_macroeconomics", "high_school_microeconomics", "econometrics")
CC_BY_SA = "CC BY-SA 4.0 (share-alike)"

BUILTIN = (
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
        from_hub=pubmedqa_row, hub_select=pubmedqa_select,
    ),
    Dataset(
        "mmlu_law", "legal", carve("validation+test"), "MIT", source="mmlu",
        subjects=MMLU_LAW, hub="cais/mmlu", hub_configs=MMLU_LAW, from_hub=mmlu_row,
    ),
    Dataset(
        "mmlu_econ", "finance", carve("validation+test"), "MIT", source="mmlu",
        subjects=MMLU_ECON, hub="cais/mmlu", hub_configs=MMLU_ECON, from_hub=mmlu_row,
    ),
)  # fmt: skip
"""The lab's built-in datasets (TrimLLM Sec. 4 datasets and stand-ins), in registry order."""
DATASETS: dict[str, Dataset] = {d.name: d for d in BUILTIN}
"""Dataset name -> :class:`Dataset` (TrimLLM Sec. 4 datasets and stand-ins)."""
DOMAINS: dict[str, list[str]] = {}
"""Domain -> the datasets :func:`load_domain` trains and tests on."""
RELATED: dict[str, list[str]] = {}
"""Domain -> eval-only related-domain datasets (PubMedQA for medical, Table 4)."""


def rebuild_domains() -> None:
    """Recompute :data:`DOMAINS` and :data:`RELATED` (in place) from :data:`DATASETS`."""
    DOMAINS.clear()
    RELATED.clear()
    for d in DATASETS.values():
        if d.domain is not None:
            (RELATED if d.related else DOMAINS).setdefault(d.domain, []).append(d.name)


rebuild_domains()


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


def data_files(p: Any) -> tuple[str, ...]:
    """One path or a list of paths, checked to be existing files, as strings."""
    paths = (p,) if isinstance(p, (str, os.PathLike)) else tuple(p)
    if not paths:
        raise ValueError("no data file given")
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"data file {str(path)!r} does not exist")
    return tuple(str(path) for path in paths)


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
    ``subject`` are optional (see :func:`trimlab.data.validate_item`).
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")
    if name in DOMAINS or name in RELATED or name == domain or domain in DATASETS:
        raise ValueError(f"a dataset and a domain cannot share a name ({name!r} / {domain!r})")
    if name in DATASETS and not overwrite:
        raise ValueError(f"dataset {name!r} is already registered (pass overwrite=True)")
    if isinstance(path_or_paths, Mapping):
        files = {src: data_files(p) for src, p in path_or_paths.items()}
        recipe = dict(recipe or {s: s for s in files if s in SPLITS})
    else:
        files = {"all": data_files(path_or_paths)}
        recipe = dict(recipe or carve("all", test, calib))
    for split, spec in recipe.items():
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} in recipe; valid splits: {list(SPLITS)}")
        missing = [s for s in parse_spec(spec)[0] if s not in files]
        if missing:
            raise ValueError(f"recipe {split!r}: {spec!r} names unknown source(s) {missing}")
    if not recipe:
        raise ValueError(f"no split of {list(SPLITS)} in {list(files)}; pass recipe=")
    ds = Dataset(
        name, domain, recipe, licence, has_context=has_context, related=related, files=files
    )
    DATASETS[name] = ds
    rebuild_domains()
    return ds


def unregister_dataset(name: str) -> None:
    """Remove a dataset from the registry (and from its domain)."""
    get_dataset(name)
    del DATASETS[name]
    rebuild_domains()
