"""User code that extends prime's registries: modules named by ``--import`` (and recorded by
the runs that needed them), and installed plugins.

A user module registers its entries when it is imported, e.g.
``MODELS.register("my-net")(ModelSpec(...))``; :func:`import_modules` imports such modules
by name. An installed package may instead declare entry points in the ``prime.plugins``
group (``[project.entry-points."prime.plugins"] mine = "my_package.prime_plugin"``); they
are loaded the first time a registry misses a name (:func:`load_plugins`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Iterable

from prime.core.errors import PrimeError

#: the entry-point group of installed plugins
PLUGIN_GROUP = "prime.plugins"


def import_modules(names: Iterable[str]) -> None:
    """Import the user modules ``names`` (dotted names, as ``import`` takes them), so that
    what they register is there; a PrimeError names a module that cannot be imported."""
    if isinstance(names, str):
        raise PrimeError(f"modules to import are a list of names, got the string {names!r}")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise PrimeError(f"a module to import is a dotted name such as my_models, got {name!r}")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # the module exists but imports something missing: its own problem
            raise PrimeError(
                f"cannot import the user module {name!r} (it registers models, devices, "
                "datasets or policies): it is not on the Python path; add its folder to "
                "PYTHONPATH or install it, then run again"
            ) from None


@functools.cache
def load_plugins() -> None:
    """Import every installed ``prime.plugins`` entry point, once per process."""
    for entry in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry.load()
        except ImportError as exc:
            raise PrimeError(
                f"the installed prime plugin {entry.name!r} ({entry.value}) cannot be "
                f"imported ({exc}); reinstall or uninstall the package that declares it"
            ) from None
