"""Command line for `napari_glandseg.train.guided` (the guided click-to-segment model).

    python training/guided.py --config training/configs/guided_cpu.yaml --out /work/runs/guided_cpu
"""

import sys

import numpy as np

from napari_glandseg.train.guided import main

if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
