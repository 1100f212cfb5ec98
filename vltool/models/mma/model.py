"""Former home of the MMA model; its names now live in ``mllm``, ``layout`` and ``qformer_frontend``.

Kept so existing imports (stages, predictors, bench scripts) keep working until they move.
"""

from vltool.models.mma.layout import VISUAL, MMACollator, MMADatasetCollate
from vltool.models.mma.mllm import MMAModel, mma_loss
from vltool.models.mma.qformer_frontend import QFormerFrontEnd

__all__ = ["VISUAL", "MMACollator", "MMADatasetCollate", "MMAModel", "QFormerFrontEnd", "mma_loss"]
