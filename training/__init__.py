"""Training recipes as command lines: ``python -m training.finetune --config ...`` (or
``python training/finetune.py``). The engine is ``napari_glandseg.train``."""
