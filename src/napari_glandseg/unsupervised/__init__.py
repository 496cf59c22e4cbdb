"""Gland proposals with no labels (MSSG's Selective Proposal Mining, written here).

``spm`` clusters one image's pixels with a network trained on that image alone,
``morphology_cue`` keeps the clusters that are gland sub-regions (epithelium, lumen, ...), and
``proposals`` turns them into gland instances for an image or a slide box.
"""

from napari_glandseg.unsupervised.morphology_cue import CueConfig, gland_mask
from napari_glandseg.unsupervised.proposals import (
    WORK_MPP,
    ProposalConfig,
    Proposals,
    instances_from_mask,
    propose_glands,
    propose_region,
)
from napari_glandseg.unsupervised.spm import ClusterConfig, cluster_image

__all__ = [
    "WORK_MPP",
    "ClusterConfig",
    "CueConfig",
    "ProposalConfig",
    "Proposals",
    "cluster_image",
    "gland_mask",
    "instances_from_mask",
    "propose_glands",
    "propose_region",
]
