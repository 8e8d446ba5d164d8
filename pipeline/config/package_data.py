"""Data files shipped inside the package (templates, topologies, the UI, stack configs).

They are read through ``importlib.resources``, so an installed wheel finds them as well
as a checkout does. Some readers need a real path (Starlette's StaticFiles, Maven, the
YAML loaders' error messages): ``data_path`` gives one, for as long as the process lives.
For a package installed as files, that is the file itself; ``as_file`` only copies from
other kinds of installs (a zip).
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from importlib import resources
from pathlib import Path

_KEPT = ExitStack()
atexit.register(_KEPT.close)


def data_path(package: str, name: str = "") -> Path:
    """A path to ``name`` inside ``package`` (the package's folder when ``name`` is empty)."""
    resource = resources.files(package)
    if name:
        resource = resource / name
    return _KEPT.enter_context(resources.as_file(resource))
