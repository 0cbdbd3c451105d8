"""Datasets, domains and the fixed train / calib / test splits of the lab.

TrimLLM (arXiv 2412.11242, Sec. 4) fine-tunes and trims one model per *domain* and
checks it on held-out questions of that domain; calibration items score the sub-layers
before each drop (Sec. 3.2, Eq. 3 and 4). This package gives every dataset of the lab
a name, groups them into domains, and cuts each into three splits that never overlap
(``train``, ``calib``, ``test``). One concept per module:

* :mod:`~trimlab.data.schema` -- the item dict (``id, question, choices, answer,
  context, subject``), :func:`validate_item` (the one item validator, also used by
  :mod:`trimlab.evaluate`), :func:`make_item`, item identity;
* :mod:`~trimlab.data.hub` -- Hugging Face hub row mappers and the hub fetch;
* :mod:`~trimlab.data.registry` -- :class:`Dataset`, :data:`DATASETS`,
  :data:`DOMAINS`, :data:`RELATED`, :func:`register_dataset` (bring your own domain);
* :mod:`~trimlab.data.splits` -- split recipes, the content hash, the leak guard,
  :func:`sample`;
* :mod:`~trimlab.data.loading` -- :func:`load_domain`: the mirror
  (``$TRIMLAB_DATA_DIR``), user files or the hub, and the cache.

Turn an item into a prompt with :func:`trimlab.prompts.build_prompt`. See
``data/README.md`` for the recipes and the measured sizes. Every name below is
importable from ``trimlab.data`` directly.
"""

from trimlab.data.hub import (
    PUBMEDQA_CHOICES,
    SCIQ_SEED,
    arc_row,
    medmcqa_row,
    mmlu_row,
    piqa_row,
    pubmedqa_official_split,
    pubmedqa_row,
    sciq_row,
)
from trimlab.data.loading import DATA_ENV, load_domain, resolve_data_dir, split_sizes
from trimlab.data.registry import (
    CC_BY_SA,
    DATASETS,
    DOMAINS,
    MMLU_ECON,
    MMLU_LAW,
    RELATED,
    SAME,
    Dataset,
    dataset_names,
    domain_of,
    get_dataset,
    licence,
    register_dataset,
    unregister_dataset,
)
from trimlab.data.schema import (
    KEYS,
    Item,
    RowMapper,
    answer_key,
    item_key,
    make_item,
    schema_error,
    validate_item,
)
from trimlab.data.splits import SPLIT_SEED, SPLITS, carve, sample

__all__ = [
    "CC_BY_SA",
    "DATASETS",
    "DATA_ENV",
    "DOMAINS",
    "Dataset",
    "Item",
    "KEYS",
    "MMLU_ECON",
    "MMLU_LAW",
    "PUBMEDQA_CHOICES",
    "RELATED",
    "RowMapper",
    "SAME",
    "SCIQ_SEED",
    "SPLITS",
    "SPLIT_SEED",
    "answer_key",
    "arc_row",
    "carve",
    "dataset_names",
    "domain_of",
    "get_dataset",
    "item_key",
    "licence",
    "load_domain",
    "make_item",
    "medmcqa_row",
    "mmlu_row",
    "piqa_row",
    "pubmedqa_official_split",
    "pubmedqa_row",
    "register_dataset",
    "resolve_data_dir",
    "sample",
    "schema_error",
    "sciq_row",
    "split_sizes",
    "unregister_dataset",
    "validate_item",
]
