"""Compute modules never import napari, Qt or magicgui: only _widgets/ and the npe2 entry modules
(_reader, _writer, _sample_data, demo) may, so that the CLI, training and dask workers run without a GUI."""

from __future__ import annotations

import re
from pathlib import Path

import napari_glandseg

PKG = Path(napari_glandseg.__file__).resolve().parent
#: The only modules that may talk to napari / Qt.
ALLOWED = {"_reader.py", "_writer.py", "_sample_data.py", "demo.py"}
GUI_IMPORT = re.compile(r"^\s*(?:import|from)\s+(napari|qtpy|PyQt5|PyQt6|PySide2|PySide6|magicgui|superqt)\b", re.M)


def test_compute_modules_do_not_import_gui():
    offenders = []
    for py in sorted(PKG.rglob("*.py")):
        rel = py.relative_to(PKG)
        if rel.parts[0] == "_widgets" or rel.name in ALLOWED and len(rel.parts) == 1:
            continue
        for m in GUI_IMPORT.finditer(py.read_text(encoding="utf-8")):
            offenders.append(f"{rel}: imports {m.group(1)}")
    assert not offenders, "GUI imports outside the GUI modules:\n" + "\n".join(offenders)


def test_gui_free_widget_helpers_stay_gui_free():
    # These helpers are meant to move into compute packages later.
    for name in ("_view_geometry.py", "_layer_meta.py", "_review.py", "_training.py"):
        text = (PKG / "_widgets" / name).read_text(encoding="utf-8")
        assert not GUI_IMPORT.search(text), f"_widgets/{name} must stay GUI-free"


def test_the_rule_catches_an_import():
    assert GUI_IMPORT.search("import numpy\nfrom napari.layers import Labels\n")
    assert GUI_IMPORT.search("    import qtpy")
    assert not GUI_IMPORT.search("# napari is not imported here\nimport napari_glandseg.slide\n")
