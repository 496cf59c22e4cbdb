"""Import rules, checked on the source with ``ast`` (imports inside functions count too).

1. Compute modules never import napari, Qt or magicgui: only _widgets/ and the npe2 entry modules
   (_reader, _writer, _sample_data, demo) may, so that the CLI, training and dask workers run
   without a GUI.
2. The packages form layers without cycles: a package imports only packages of lower layers
   (``LAYERS``), never a sibling of its own layer and never a higher one. The entry points
   (commands, widgets, CLI, npe2 modules) may import anything, each other included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import napari_glandseg

PKG = Path(napari_glandseg.__file__).resolve().parent
#: The only modules that may talk to napari / Qt.
ALLOWED = {"_reader.py", "_writer.py", "_sample_data.py", "demo.py"}
GUI_ROOTS = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt"}

#: Lowest first. ``slide`` and ``model`` know nothing of each other; ``labels`` (stores, exports,
#: GeoJSON/CSV tables, layer metadata) sits on the slide; ``inference`` and ``interactive`` run
#: models and write labels; ``train`` and ``unsupervised`` (no-label proposals) use all of those;
#: the entry points sit on top.
LAYERS: list[set[str]] = [
    {"errors"},
    {"_atomic", "_lock"},
    {"slide", "model"},
    {"labels"},
    {"inference", "interactive"},
    {"train", "unsupervised"},
    {"commands", "_widgets", "cli", "_reader", "_writer", "_sample_data", "demo"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
TOP = len(LAYERS) - 1


def _unit(rel: Path) -> str:
    """The package (or top-level module) a file belongs to: ``slide``, ``cli``, ..."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(tree: ast.AST) -> list[str]:
    """Every absolute module an ``import``/``from ... import`` names, anywhere in the file; for
    ``from napari_glandseg import x`` the submodule ``napari_glandseg.x``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
            if node.module == "napari_glandseg":
                out += [f"napari_glandseg.{a.name}" for a in node.names]
    return out


def _sources() -> list[tuple[Path, list[str]]]:
    return [(py.relative_to(PKG), _imports(ast.parse(py.read_text(encoding="utf-8"))))
            for py in sorted(PKG.rglob("*.py"))]


def layer_offences(unit: str, modules: list[str]) -> list[str]:
    """The imports of ``modules`` that ``unit`` may not make under ``LAYERS``."""
    bad = []
    for mod in modules:
        parts = mod.split(".")
        if parts[0] != "napari_glandseg" or len(parts) < 2 or parts[1] == unit:
            continue
        target = parts[1]
        if target not in RANK:  # a top-level name (e.g. __version__): the package root
            continue
        if RANK[unit] == TOP:
            continue
        if RANK[target] >= RANK[unit]:
            bad.append(f"{unit} imports {mod}")
    return bad


def test_every_package_has_a_layer():
    units = {_unit(rel) for rel, _ in _sources()} - {"__init__"}
    assert units <= set(RANK), f"put these in LAYERS: {sorted(units - set(RANK))}"


def test_compute_modules_do_not_import_gui():
    offenders = []
    for rel, modules in _sources():
        if rel.parts[0] == "_widgets" or rel.name in ALLOWED and len(rel.parts) == 1:
            continue
        offenders += [f"{rel}: imports {m}" for m in modules if m.split(".")[0] in GUI_ROOTS]
    assert not offenders, "GUI imports outside the GUI modules:\n" + "\n".join(offenders)


def test_gui_free_widget_helper_stays_gui_free():
    tree = ast.parse((PKG / "_widgets" / "_training.py").read_text(encoding="utf-8"))
    assert not [m for m in _imports(tree) if m.split(".")[0] in GUI_ROOTS]


def test_no_lower_layer_imports_a_higher_one():
    offenders = []
    for rel, modules in _sources():
        unit = _unit(rel)
        if unit == "__init__":
            continue
        offenders += [f"{rel}: {o}" for o in layer_offences(unit, modules)]
    assert not offenders, "imports against the layering:\n" + "\n".join(offenders)


def test_the_rules_catch_an_import():
    src = "import numpy\ndef f():\n    from napari.layers import Labels\n    import napari_glandseg.inference.region\n"
    modules = _imports(ast.parse(src))
    assert "napari.layers" in modules  # inside a function, too
    assert layer_offences("labels", modules) == ["labels imports napari_glandseg.inference.region"]
    assert layer_offences("inference", ["napari_glandseg.labels.store"]) == []
    assert layer_offences("slide", ["napari_glandseg.model"]) == ["slide imports napari_glandseg.model"]
    assert layer_offences("commands", ["napari_glandseg._widgets._segment"]) == []
    assert _imports(ast.parse("from napari_glandseg import slide\n")) == ["napari_glandseg", "napari_glandseg.slide"]


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (inside top-level if/try blocks too), and its ``__all__``."""
    names: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                names.update(e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant))
        elif isinstance(node, ast.If | ast.Try):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
            todo += [s for h in getattr(node, "handlers", []) for s in h.body]
    return names


def _module_file(dotted: str) -> Path | None:
    rel = Path(*dotted.split(".")[1:])
    for cand in (PKG / rel / "__init__.py", (PKG / rel).with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def test_every_internal_import_names_something_that_exists():
    # moved modules must not leave an import behind that only fails when its function runs
    missing = []
    for py in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [(a.name, None) for a in node.names if a.name.startswith("napari_glandseg.")]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("napari_glandseg"):
                mods = [(node.module, [a.name for a in node.names])]
            else:
                continue
            for mod, names in mods:
                target = PKG / "__init__.py" if mod == "napari_glandseg" else _module_file(mod)
                if target is None:
                    missing.append(f"{py.relative_to(PKG)}: {mod}")
                    continue
                bound = _bound_names(ast.parse(target.read_text(encoding="utf-8")))
                for name in names or []:
                    if name not in bound and _module_file(f"{mod}.{name}") is None:
                        missing.append(f"{py.relative_to(PKG)}: {mod}.{name}")
    assert not missing, "imports of names that do not exist:\n" + "\n".join(missing)
