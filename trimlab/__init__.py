"""trimlab: a teaching lab that reproduces TrimLLM (arXiv 2412.11242).

Progressive layer dropping for domain-specific LLMs: fine-tune on one domain and, round
by round, physically remove the attention or MLP sub-layers that matter least to it.

One concept per module: :mod:`~trimlab.models` (loading), :mod:`~trimlab.data`
(datasets and splits), :mod:`~trimlab.prompts`, :mod:`~trimlab.evaluate`,
:mod:`~trimlab.surgery` (removing sub-layers), :mod:`~trimlab.accounting` (sizes and
FLOPs), :mod:`~trimlab.checkpoint` (save, load, export), :mod:`~trimlab.scoring`
(Eq. 3 and 4, peers), :mod:`~trimlab.specialization` (Hypothesis 1),
:mod:`~trimlab.profiles`.
"""

__version__ = "0.1.0"

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
from trimlab.data import DOMAINS, load_domain  # noqa: E402
from trimlab.evaluate import evaluate  # noqa: E402
from trimlab.models import load_model  # noqa: E402
from trimlab.profiles import get_profile  # noqa: E402
from trimlab.prompts import build_prompt  # noqa: E402
from trimlab.scoring import activation_scores, calibration_scores, rank, score  # noqa: E402
from trimlab.surgery import drop, dropped, sublayers, trial_drop  # noqa: E402

__all__ = [
    "DOMAINS",
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
    "rank",
    "save_trimmed",
    "score",
    "sublayer_flops",
    "sublayer_params",
    "sublayers",
    "trial_drop",
]
