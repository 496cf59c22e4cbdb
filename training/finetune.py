"""Command line for `napari_glandseg.train.supervised` (the engine lives in the package so that the
plugin can run it too). See that module for the settings.

    python training/finetune.py --config training/configs/....yaml
    torchrun --nproc_per_node=2 training/finetune.py --config ... --out runs/x
"""

import sys

import numpy as np

from napari_glandseg.train.supervised import main

if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
