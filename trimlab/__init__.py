"""trimlab: a teaching lab that reproduces TrimLLM (arXiv 2412.11242).

Progressive layer dropping for domain-specific LLMs: fine-tune on one domain and, round
by round, physically remove the attention or MLP sub-layers that matter least to it.
"""

__version__ = "0.1.0"
