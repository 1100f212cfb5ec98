"""Keep third-party chatter out from between vltool's own lines (``--debug`` lets it through).

- transformers 5 draws a "Loading weights" tqdm bar on every ``from_pretrained``: for the demo's
  tiny models a dozen bars per command, none of them progress a user waits on. Only
  transformers' own bars go (``transformers.utils.logging.set_tqdm_hook``); huggingface_hub's
  download bars stay, since a multi-GB download is progress worth seeing.
- huggingface_hub logs a warning per retried request ("Retrying in 1s [Retry 1/5]", "'...' thrown
  while requesting HEAD ...") from ``huggingface_hub.utils._http``; when the request finally fails
  vltool reports it in one line (``sources.hub_cache``), so the retries are raised to errors only.
"""

from __future__ import annotations

import logging

HUB_HTTP_LOGGER = "huggingface_hub.utils._http"


def quiet_third_party(debug: bool = False) -> None:
    """Silence transformers' weight-loading bars and the hub's retry lines, unless ``debug``."""
    logging.getLogger(HUB_HTTP_LOGGER).setLevel(logging.NOTSET if debug else logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    set_hook = getattr(hf_logging, "set_tqdm_hook", None)  # transformers >= 5
    if set_hook is None:  # 4.x draws "Loading checkpoint shards" for sharded weights only: real progress
        return
    set_hook(None if debug else _no_bar)


def _no_bar(factory, args, kwargs):
    """A tqdm stand-in that iterates without drawing (transformers' own ``EmptyTqdm``)."""
    from transformers.utils.logging import EmptyTqdm

    return EmptyTqdm(*args, **kwargs)
