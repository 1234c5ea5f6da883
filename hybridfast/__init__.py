"""hybridfast: train and serve multilingual dense-retrieval encoders, fast.

Hybrid (monolingual + cross-lingual) batch training after Elmahdy, Lin & Ahmad 2024
(arXiv 2408.10536), fused Triton contrastive-loss and pooling kernels, DeepSpeed training,
and a lean serving path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load", "__version__"]

if TYPE_CHECKING:
    from hybridfast.encoder import FusedEncoder


def load(model: str, device: Any = None, dtype: Any = None, **kwargs: Any) -> FusedEncoder:
    """Load an encoder checkpoint directory (or hub id) for retrieval.

    Reads the checkpoint's encoder config (pooling, normalization, prefixes, max length);
    nothing is re-specified by hand. See :class:`hybridfast.encoder.FusedEncoder`.
    """
    from hybridfast.encoder import FusedEncoder

    return FusedEncoder.from_pretrained(model, device=device, dtype=dtype, **kwargs)
