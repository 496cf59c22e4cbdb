"""The set-up lock: exact versions of every package the suite last passed with.

``requirements/lock.txt`` pins every distribution of a venv built from ``setup.cfg``'s ranges
(``pip freeze --all``: torch, its CUDA wheels, pip itself), and records a hash of the
dependency sections of ``setup.cfg`` it was made from. ``make setup`` installs with it as a pip
constraints file; ``setup.cfg`` keeps loose ranges for people who install the plugin into their
own napari.

    python scripts/lock.py check                 # setup.cfg's dependencies changed since the lock? (exit 1)
    python scripts/lock.py write VENV/bin/python # freeze that venv into the lock
    python scripts/lock.py verify VENV/bin/python # that venv holds exactly the locked versions?
    python scripts/lock.py diff VENV/bin/python  # locked versions vs that venv's, one line each

Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import configparser
import hashlib
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
LOCK = ROOT / "requirements" / "lock.txt"
PROJECT = "napari-glandseg"
HASH_PREFIX = "# setup.cfg dependencies sha256: "


def dependency_hash(setup_cfg: Path = SETUP_CFG) -> str:
    """sha256 of what decides the installed set: python_requires, install_requires, extras."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(setup_cfg, encoding="utf-8")
    parts = [cfg.get("options", "python_requires", fallback=""), cfg.get("options", "install_requires", fallback="")]
    if cfg.has_section("options.extras_require"):
        parts += [f"[{k}]{v}" for k, v in sorted(cfg.items("options.extras_require"))]
    text = "\n".join(" ".join(line.split()) for part in parts for line in part.strip().splitlines())
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_hash(lock: Path = LOCK) -> str | None:
    if not lock.is_file():
        return None
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(HASH_PREFIX):
            return line[len(HASH_PREFIX):].strip()
    return None


def freeze(python: str) -> dict[str, str]:
    """{normalised name: version} of a venv, the project itself left out."""
    out = subprocess.run([python, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                         check=True, capture_output=True, text=True).stdout
    pins = {}
    for line in out.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    pins.pop(_norm(PROJECT), None)
    return pins


def locked(lock: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def check() -> int:
    want, have = dependency_hash(), recorded_hash()
    if have is None:
        print(f"{LOCK}: missing: run `make lock`", file=sys.stderr)
        return 1
    if want != have:
        print(f"{LOCK} is stale: the dependencies in {SETUP_CFG.name} changed since it was made; "
              "run `make lock` (builds a venv from the ranges, runs the suite, writes the lock)", file=sys.stderr)
        return 1
    return 0


def write(python: str) -> int:
    pins = freeze(python)
    py = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                        check=True, capture_output=True, text=True).stdout.strip()
    header = [
        "# Exact versions for `make setup` (a pip constraints file). Made by `make lock` on "
        f"{date.today().isoformat()}:",
        f"# a venv from setup.cfg's ranges on Python {py}, {platform.machine()}, whose test suite passed.",
        "# Do not edit by hand; setup.cfg keeps the loose ranges for `pip install napari-glandseg`.",
        f"{HASH_PREFIX}{dependency_hash()}",
    ]
    LOCK.parent.mkdir(exist_ok=True)
    tmp = LOCK.with_suffix(".tmp")
    tmp.write_text("\n".join(header + [f"{n}=={v}" for n, v in sorted(pins.items())]) + "\n", encoding="utf-8")
    tmp.replace(LOCK)
    print(f"{LOCK}: {len(pins)} packages")
    return 0


def verify(python: str) -> int:
    want, have = locked(), freeze(python)
    wrong = {n: (v, have.get(n)) for n, v in want.items() if have.get(n) != v}
    extra = sorted(set(have) - set(want))
    for name, (v, got) in sorted(wrong.items()):
        print(f"{name}: locked {v}, installed {got}", file=sys.stderr)
    for name in extra:  # something installed by hand beside the set-up: said, not refused
        print(f"note: {name} {have[name]} is installed but not in the lock", file=sys.stderr)
    if wrong:
        print(f"{python}: {len(wrong)} packages differ from {LOCK}", file=sys.stderr)
    return 1 if wrong else 0


def diff(python: str) -> int:
    want, have = locked(), freeze(python)
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            print(f"{name}: locked {want.get(name, '-')}  this venv {have.get(name, '-')}")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"check", "write", "verify", "diff"} or (argv[0] != "check" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "check":
        return check()
    return {"write": write, "verify": verify, "diff": diff}[argv[0]](argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
