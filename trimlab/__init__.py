"""trimlab: a teaching lab that reproduces TrimLLM (arXiv 2412.11242).

Progressive layer dropping for domain-specific LLMs: fine-tune on one domain and, round
by round, physically remove the attention or MLP sub-layers that matter least to it.

The modules follow the pipeline (the README's "How the code is organised" has one line
per module): **load** (:mod:`~trimlab.models`, :mod:`~trimlab.data`,
:mod:`~trimlab.prompts`, :mod:`~trimlab.config`) -> **score** (:mod:`~trimlab.scoring`)
-> **drop** (:mod:`~trimlab.families`, :mod:`~trimlab.surgery`,
:mod:`~trimlab.accounting`, :mod:`~trimlab.target`) -> **heal** (:mod:`~trimlab.heal`,
:mod:`~trimlab.finetune`, :mod:`~trimlab.sparse`) -> **measure**
(:mod:`~trimlab.evaluate`, :mod:`~trimlab.bench`, :mod:`~trimlab.cost`), tied together
by :func:`trim` (:mod:`~trimlab.pipeline`), plus the lab helpers.
"""

__version__ = "0.2.0"

from trimlab.accounting import (  # noqa: E402
    compression,
    flops_per_token,
    ideal_speedup,
    param_bytes,
    param_count,
    sublayer_flops,
    sublayer_params,
)
from trimlab.checkpoint import load_trimmed, save_trimmed  # noqa: E402
from trimlab.config import TrimConfig  # noqa: E402
from trimlab.data import DOMAINS, load_domain  # noqa: E402
from trimlab.evaluate import evaluate  # noqa: E402
from trimlab.history import History, Round  # noqa: E402
from trimlab.models import load_model  # noqa: E402
from trimlab.pipeline import TrimResult, trim  # noqa: E402
from trimlab.profiles import get_profile  # noqa: E402
from trimlab.prompts import build_prompt  # noqa: E402
from trimlab.scoring import activation_scores, calibration_scores, rank, score  # noqa: E402
from trimlab.surgery import drop, dropped, sublayers, trial_drop  # noqa: E402
from trimlab.target import Target, parse_target  # noqa: E402

__all__ = [
    "DOMAINS",
    "History",
    "Round",
    "Target",
    "TrimConfig",
    "TrimResult",
    "activation_scores",
    "build_prompt",
    "calibration_scores",
    "compression",
    "drop",
    "dropped",
    "evaluate",
    "flops_per_token",
    "get_profile",
    "ideal_speedup",
    "load_domain",
    "load_model",
    "load_trimmed",
    "param_bytes",
    "param_count",
    "parse_target",
    "rank",
    "save_trimmed",
    "score",
    "sublayer_flops",
    "sublayer_params",
    "sublayers",
    "trial_drop",
    "trim",
]
