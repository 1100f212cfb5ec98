"""``vltool convert`` (LAVIS BLIP-2 ``.pth`` -> HF ``Blip2ForConditionalGeneration``): not landed yet.

The command exists so scripts can name it; running it says plainly that the conversion is not
implemented yet (exit code 2). Until then, Salesforce's HF BLIP-2 folders are read directly.
"""

from __future__ import annotations

from typing import Any

from vltool.errors import NotImplementedYet


def run(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedYet("vltool convert (LAVIS .pth -> HF BLIP-2) is not implemented yet; pass an HF "
                            "BLIP-2 folder (the Salesforce/blip2-* layout) as --src instead")
