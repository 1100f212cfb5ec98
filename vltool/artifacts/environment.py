"""The library versions a result was produced with, recorded beside it.

Training and the demo world are deterministic for one seed *and one set of library versions*:
another transformers or tokenizers release can initialise or tokenise differently and so give
other numbers. Manifests, ``world.json`` and the demo report record the versions so a changed
figure can be traced to its environment. Read from package metadata, so nothing is imported.
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "safetensors")


def package_versions() -> dict[str, str]:
    """Python and the versions of the libraries that shape the numbers ("missing" when absent)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions
