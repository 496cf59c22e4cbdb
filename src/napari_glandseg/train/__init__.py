"""The training engine: supervised fine-tuning, SMIT pretraining and tumor-guided distillation.

Importable (the plugin's one-click fine-tune runs it); ``training/*.py`` are thin command lines
over it.
"""
