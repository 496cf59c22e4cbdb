"""Keep triton from loading inside a napari window on machines without CUDA.

``torch._dynamo`` (imported by torchvision, hence by timm and the model) imports triton when it
is installed. Triton bundles its own LLVM; loaded after Mesa's OpenGL driver (llvmpipe: VMs,
remote desktops, CI), the two LLVMs clash and the process segfaults. Triton only serves
``torch.compile`` on GPUs, which the plugin does not use: without CUDA, mark it as absent
before the model is first imported. torch treats the ImportError as "no triton".
"""

from __future__ import annotations

import sys


def keep_triton_out() -> bool:
    """Mark triton as not importable when it is not loaded yet and CUDA is absent; True if marked."""
    if "triton" in sys.modules or "torch._dynamo" in sys.modules:
        return False
    import torch

    if torch.cuda.is_available():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # `import triton` now raises ImportError
    return True
