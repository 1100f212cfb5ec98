"""Plugins: packages that add data kinds (reader + metric family), caption metrics and model
aliases to vltool's registries.

A plugin declares an entry point in the ``vltool.plugins`` group whose value is a callable
``register()``; it runs once, the first time any registry is asked (``vltool.data.specs``,
``vltool.eval.scoring``, ``vltool.sources.aliases``). The demo world is one such plugin
(``vltool.demo.plugin``), so no lower layer imports it; a third-party dataset or model zoo
plugs in the same way::

    [project.entry-points."vltool.plugins"]
    mydata = "mypkg.vltool_plugin:register"
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "vltool.plugins"
_state = {"loaded": False}


def load_plugins() -> None:
    """Run every installed plugin's ``register()`` once per process."""
    if _state["loaded"]:
        return
    _state["loaded"] = True  # first: a plugin's register() may itself look registries up
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        entry.load()()
