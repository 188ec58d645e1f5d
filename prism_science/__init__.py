"""prism-science: VideoPrism-style video encoders and behavior annotation for ethology labs.

The headless library. It never imports Qt or napari, and importing it has no side effects:
heavy submodules (torch models, video I/O, stores) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    import torch


def load_model(name_or_dir: str, **config_overrides: Any) -> torch.nn.Module:
    """Load a registered model or a converted weights folder, in eval mode.

    See :func:`prism_science.models.load_model`.
    """
    from prism_science.models import load_model as _load_model

    return _load_model(name_or_dir, **config_overrides)


__all__ = ["__version__", "load_model"]
