"""Loading a split of a dataset or a domain: where the rows come from, and the cache.

TrimLLM (arXiv 2412.11242, Sec. 4) runs one domain at a time; :func:`load_domain` gives
the ``train``, ``calib`` or ``test`` items of a dataset or of a whole domain.

Where the rows come from, in this order:

1. a user dataset's own JSONL files (:func:`trimlab.data.register_dataset`);
2. a local mirror when ``data_dir`` or ``$TRIMLAB_DATA_DIR`` (:data:`DATA_ENV`) names
   one, laid out as ``<dir>/<source>/<split>.jsonl`` (:func:`resolve_data_dir`);
3. otherwise the Hugging Face hub, through :func:`trimlab.data.hub.load_hf` and the
   dataset's row mapper.

Both the mirror and the hub apply the same recipe (:mod:`trimlab.data.splits`) to the
same source split, so they give the same splits. Every row is checked by
:func:`trimlab.data.validate_item`. Files are read once per (path, mtime, size) and
hub splits once per session (:data:`CACHE`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trimlab.data import hub
from trimlab.data.registry import DATASETS, DOMAINS, Dataset, get_dataset
from trimlab.data.schema import Item, validate_item
from trimlab.data.splits import (
    SPLITS,
    check_n,
    drop_leaks,
    parse_spec,
    sample,
    splits_above,
    take_slice,
)

DATA_ENV = "TRIMLAB_DATA_DIR"
"""Environment variable naming the local mirror."""
CACHE: dict[tuple, list[Item]] = {}
"""``("file", path, mtime_ns, size)`` or ``("hub", name, hub_id, source)`` -> items."""


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


def read_jsonl(path: Path) -> list[Item]:
    """The validated items of one JSONL file (``id`` defaults to ``<stem>-<line>``)."""
    stat = path.stat()
    key = ("file", str(path), stat.st_mtime_ns, stat.st_size)
    if key not in CACHE:
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
        CACHE[key] = rows
    return CACHE[key]


def read_hub(ds: Dataset, src: str) -> list[Item]:
    """The validated items of one source split of ``ds``, from the Hugging Face hub."""
    key = ("hub", ds.name, ds.hub, src)
    if key not in CACHE:
        hub_split = ds.hub_splits.get(src, src)
        items = []
        for config in ds.hub_configs:
            try:
                rows = hub.load_hf(ds.hub, config, hub_split)
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
        CACHE[key] = items
    return CACHE[key]


def source_items(ds: Dataset, src: str, data_dir: Path | None) -> list[Item]:
    """All items of one source split (subject filter applied)."""
    if src in ds.files:
        items = [it for p in ds.files[src] for it in read_jsonl(Path(p))]
    elif data_dir is not None and ds.source is not None:
        path = data_dir / ds.source / f"{src}.jsonl"
        if not path.is_file():
            raise ValueError(f"dataset {ds.name!r}: split file {str(path)!r} is missing")
        items = read_jsonl(path)
    elif ds.hub is not None and ds.from_hub is not None:
        items = read_hub(ds, src)
    else:
        raise ValueError(f"dataset {ds.name!r} has no source for {src!r}; set {DATA_ENV}")
    return [it for it in items if not ds.subjects or it["subject"] in ds.subjects]


def raw_split(ds: Dataset, split: str, data_dir: Path | None) -> list[Item]:
    """The items of ``ds``'s recipe for ``split``, before the leak filter."""
    sources, lo, hi = parse_spec(ds.recipe[split])
    items = [it for src in sources for it in source_items(ds, src, data_dir)]
    return take_slice(items, lo, hi)


def dataset_split(ds: Dataset, split: str, data_dir: Path | None) -> list[Item]:
    """One split of one dataset, leak-filtered against the splits above it (new dicts)."""
    if split not in ds.recipe:
        raise ValueError(
            f"dataset {ds.name!r} has no {split!r} split; available: {list(ds.splits())}"
        )
    held_out = [it for s in splits_above(split, ds.recipe) for it in raw_split(ds, s, data_dir)]
    return drop_leaks(raw_split(ds, split, data_dir), held_out)


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
    seeded sample of ``n`` items (see :func:`~trimlab.data.sample`). Rows come from
    ``data_dir``, else ``$TRIMLAB_DATA_DIR``, else the Hugging Face hub.

    Each item is a new dict with exactly the keys ``id, question, choices, answer,
    context, subject``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")
    check_n(n)  # validate n before touching any data
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
    items = [it for nm in names for it in dataset_split(DATASETS[nm], split, root)]
    return sample(items, n, seed)


def split_sizes(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """Number of items per available split of a dataset or domain."""
    names = DOMAINS[name] if name in DOMAINS else [get_dataset(name).name]
    splits = [s for s in SPLITS if all(s in DATASETS[nm].recipe for nm in names)]
    return {s: len(load_domain(name, s, data_dir=data_dir)) for s in splits}
