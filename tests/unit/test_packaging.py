"""The wheel holds every package and every data file the code reads (pyproject's packaging).

pyproject.toml lists its packages instead of finding them (three live outside pipeline/),
and names its package data by glob with include-package-data off: a new package folder or
data file is in the wheel only once pyproject says so. These tests say so first.
tests/wheel_smoke.sh (`make wheel-smoke`) then installs a built wheel and runs it.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import shutil
import subprocess
import tomllib
import warnings
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
PACKAGES: list[str] = SETUPTOOLS["packages"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS.get("package-dir", {})
PACKAGE_DATA: dict[str, list[str]] = SETUPTOOLS.get("package-data", {})
# Folders whose packages are found by their names: the top-level packages (the rest is
# PACKAGE_DIR's mapped folders).
TOP_LEVEL = ("pipeline", "agents")


def package_folder(package: str) -> Path:
    """Where setuptools takes a package from: its nearest package-dir entry, else its name."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = PACKAGE_DIR.get(".".join(parts[:cut]))
        if mapped is not None:
            return ROOT / mapped / Path(*parts[cut:])
    return ROOT / Path(*parts)


def _git_ignored(paths: list[Path]) -> set[Path]:
    """The paths .gitignore excludes (generated files: Maven's target/, caches)."""
    if not paths or shutil.which("git") is None or not (ROOT / ".git").exists():
        return set()
    result = subprocess.run(
        ["git", "check-ignore", "--stdin", "-z"],
        input="\0".join(str(p.relative_to(ROOT)) for p in paths),
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {ROOT / name for name in result.stdout.split("\0") if name}


def source_files(folder: Path) -> list[Path]:
    """Files under folder, without caches and what git ignores."""
    files = [
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    ignored = _git_ignored(files)
    return sorted(path for path in files if path not in ignored)


def package_folders() -> dict[str, Path]:
    """Every folder with an __init__.py under pipeline/, agents/ and the mapped folders."""
    roots = {name: ROOT / name for name in TOP_LEVEL}
    roots.update({name: ROOT / folder for name, folder in PACKAGE_DIR.items()})
    found: dict[str, Path] = {}
    for name, root in roots.items():
        for init in source_files(root):
            if init.name == "__init__.py":
                rel = init.parent.relative_to(root).parts
                found[".".join((name, *rel))] = init.parent
    return found


def own_files(package: str) -> list[str]:
    """Non-Python files of a package, relative to its folder; subpackages' files excluded."""
    folder = package_folder(package)
    subfolders = [f for name, f in package_folders().items() if name.startswith(package + ".")]
    return [
        path.relative_to(folder).as_posix()
        for path in source_files(folder)
        if path.suffix != ".py" and not any(sub in path.parents for sub in subfolders)
    ]


def setuptools_data_files(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Package data as setuptools' build_py collects it for the wheel, per package."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "[tool.setuptools] support is still beta"
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
        build_py = dist.get_command_obj("build_py")
        build_py.ensure_finalized()
        return {package: set(files) for package, _src, _build, files in build_py.data_files}


# --- packages -------------------------------------------------------------------------


def test_every_package_folder_is_listed_and_every_listed_package_exists() -> None:
    found = set(package_folders())
    listed = set(PACKAGES)
    assert not found - listed, f"add to pyproject's [tool.setuptools] packages: {found - listed}"
    assert not listed - found, f"listed in pyproject, but no folder/__init__.py: {listed - found}"


def test_no_python_folder_lacks_its_init() -> None:
    """A folder of modules without __init__.py would import in a checkout, not from a wheel."""
    roots = [ROOT / name for name in TOP_LEVEL]
    roots += [ROOT / folder for folder in PACKAGE_DIR.values()]
    missing = sorted(
        {
            py.parent.relative_to(ROOT).as_posix()
            for root in roots
            for py in source_files(root)
            if py.suffix == ".py" and not (py.parent / "__init__.py").is_file()
        }
    )
    assert not missing, f"folders with modules but no __init__.py: {missing}"


# --- package data ---------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_every_data_file_of_a_package_is_package_data(package: str) -> None:
    globs = PACKAGE_DATA.get(package, [])
    undeclared = [f for f in own_files(package) if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not undeclared, (
        f"{package} ({package_folder(package).relative_to(ROOT)}) has files outside its "
        f"[tool.setuptools.package-data] globs {globs}: {undeclared}"
    )


@pytest.mark.parametrize(("package", "globs"), sorted(PACKAGE_DATA.items()))
def test_every_package_data_glob_matches_a_file(package: str, globs: list[str]) -> None:
    assert package in PACKAGES
    files = own_files(package)
    for glob in globs:
        assert any(fnmatch.fnmatch(f, glob) for f in files), f"{package}: {glob} matches nothing"


def test_setuptools_puts_every_data_file_in_the_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same, as setuptools' build_py sees it (what `python -m build` packs)."""
    data = setuptools_data_files(monkeypatch)
    for package in PACKAGES:
        assert data.get(package, set()) == set(own_files(package)), package


# Where the code finds its data: (module, constant, package, path inside the package).
LOOKUPS = [
    ("pipeline.store.indices", "SCHEMAS", "pipeline.schemas", "."),
    ("pipeline.store.indices", "SPAN_TEMPLATE_FILE", "pipeline.schemas",
     "otel-v1-apm-span-template.json"),
    ("pipeline.store.indices", "SERVICE_MAP_TEMPLATE_FILE", "pipeline.schemas",
     "otel-v1-apm-service-map-template.json"),
    ("pipeline.cli", "SHIPPED_ESTATE", "pipeline.topologies", "estate-30.yaml"),
    ("pipeline.loadgen", "DEFAULT_TOPOLOGY", "pipeline.topologies", "estate-30.yaml"),
    ("pipeline.query.app", "UI_DIR", "pipeline.query", "ui"),
    ("pipeline.local.stack", "STACK_DIR", "pipeline.local.stack_files", "."),
]  # fmt: skip
# The files read through them (the UI's other files are fetched by the browser: the glob
# test above covers them).
READS = {
    "pipeline.schemas": [
        "otel-v1-apm-span-template.json",
        "otel-v1-apm-service-map-template.json",
        "otel-v1-apm-span-ism-policy.json",
        "sampling-policy.schema.json",
    ],
    "pipeline.topologies": ["estate-30.yaml", "policies-default.yaml"],
    "pipeline.query": ["ui/index.html"],
    "pipeline.local.stack_files": [
        "kafka/pom.xml",
        "kafka/server.properties",
        "kafka/log4j2.properties",
        "opensearch/pom.xml",
        "opensearch/opensearch.yml",
    ],
}


@pytest.mark.parametrize(("module", "name", "package", "relpath"), LOOKUPS)
def test_the_code_finds_its_data_in_its_package(
    module: str, name: str, package: str, relpath: str
) -> None:
    """Each constant points into its package (importlib.resources), not at the checkout."""
    value = getattr(importlib.import_module(module), name)
    assert Path(str(value)) == Path(str(resources.files(package))) / relpath


def test_every_file_the_code_reads_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    declared = setuptools_data_files(monkeypatch)
    for package, names in READS.items():
        for name in names:
            assert (resources.files(package) / name).is_file(), f"{package}: {name} missing"
            assert name in declared[package], f"{package}: {name} is not package data"


FILE_LOOKUP = re.compile(r"__file__|\.parents\[")


def test_no_module_finds_data_through_its_own_path() -> None:
    """Path(__file__).parents[...] works in a checkout and breaks in an installed wheel."""
    offenders = [
        f"{py.relative_to(ROOT)}:{number}: {line.strip()}"
        for top in TOP_LEVEL
        for py in source_files(ROOT / top)
        if py.suffix == ".py"
        for number, line in enumerate(py.read_text().splitlines(), 1)
        if FILE_LOOKUP.search(line)
    ]
    assert not offenders, "use importlib.resources.files(...) instead:\n" + "\n".join(offenders)
