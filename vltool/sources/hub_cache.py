"""Finding Hugging Face models on this machine, and downloading them the way every HF tool does.

Real aliases (``opt2.7b``, ``vicuna7b``) and hub ids (``lmsys/vicuna-7b-v1.5``) name hub
repositories. They are looked up first in the local cache that ``huggingface_hub`` writes
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``):
``models--org--name/refs/<branch>`` names a snapshot and ``snapshots/<sha>/`` holds it. When the
model is missing and the machine may go online (``HF_HUB_OFFLINE`` unset or false), it is
downloaded with ``huggingface_hub.snapshot_download`` (its progress bars show), into that same
cache; offline, the caller fails with one line naming the download command.

A revision (branch, tag or commit sha) is given as ``--revision`` or as ``spec@REV``
(``lmsys/vicuna-7b-v1.5@main``); without one, ``refs/main`` decides.
The cache directory is read from the environment at every call (``huggingface_hub.constants``
freezes it at import time, which would ignore an ``HF_HOME`` set later, e.g. in tests). A cache
copied from another machine often lacks ``refs/``; then the newest complete snapshot wins.
A snapshot only counts when its weights are all there: a half-finished download would
otherwise resolve and fail much later with a less helpful message.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vltool.errors import DownloadFailed, UserError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def hf_cache_dir() -> Path:
    """The hub cache directory the environment names now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home).expanduser() / "hub"


def weights_complete(folder: Path) -> bool:
    """Whether a model folder has a config and all of its weight files (sharded or not)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return False
    if any((folder / name).is_file() for name in WEIGHT_FILES):
        return True
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.is_file():
            try:
                shards = set(json.loads(index.read_text())["weight_map"].values())
            except (ValueError, KeyError):
                return False
            return all((folder / shard).is_file() for shard in shards)
    return False


def _repo_dir(hub_id: str, cache: Path) -> Path:
    return cache / f"models--{hub_id.replace('/', '--')}"


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def looks_like_hub_id(spec: str) -> bool:
    """``org/name`` (after any ``@revision``): what a hub repository id looks like."""
    return bool(HUB_ID.match(split_revision(spec)[0]))


def split_revision(spec: str) -> tuple[str, str | None]:
    """``name@rev`` -> (name, rev); anything else -> (spec, None)."""
    name, sep, rev = spec.rpartition("@")
    if sep and name and rev and "/" not in rev:
        return name, rev
    return spec, None


def with_revision(spec: str, revision: str | None) -> str:
    """``spec`` pinned to ``revision`` (``--revision``); a spec's own ``@rev`` must agree."""
    if not revision:
        return spec
    name, own = split_revision(spec)
    if own is not None and own != revision:
        raise UserError(f"{spec} names revision {own} but --revision is {revision}; give one")
    return f"{name}@{revision}"


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to a true value, read now."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def cached_snapshot(hub_id: str, cache_dir: Path | None = None, revision: str | None = None) -> Path | None:
    """The local snapshot folder of ``hub_id`` (at ``revision``) with complete weights, or None. No network."""
    from huggingface_hub import try_to_load_from_cache

    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    if revision is not None:
        snapshots = _repo_dir(hub_id, cache) / "snapshots"
        ref = _repo_dir(hub_id, cache) / "refs" / revision
        sha = ref.read_text().strip() if ref.is_file() else revision
        candidates = [snapshots / sha] if COMMIT.match(sha) else []
        if not COMMIT.match(sha) and len(sha) >= 7:  # a short commit sha
            candidates = sorted(snapshots.glob(f"{sha}*"))
        complete = [c for c in candidates if weights_complete(c)]
        return complete[0] if len(complete) == 1 else None
    found = try_to_load_from_cache(hub_id, "config.json", cache_dir=str(cache))
    if isinstance(found, str):
        snapshot = Path(found).parent
        if weights_complete(snapshot):
            return snapshot
    snapshots = _repo_dir(hub_id, cache) / "snapshots"
    candidates = sorted((p for p in snapshots.glob("*") if weights_complete(p)),
                        key=lambda p: (p / "config.json").stat().st_mtime)
    return candidates[-1] if candidates else None


def partial_snapshot(hub_id: str, cache_dir: Path | None = None) -> Path | None:
    """A snapshot that exists but misses weights (an interrupted download), for error messages."""
    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    snapshots = sorted((_repo_dir(hub_id, cache) / "snapshots").glob("*"))
    return snapshots[-1] if snapshots else None


def download_decision(hub_id: str, revision: str | None = None) -> str:
    """What resolving ``hub_id`` will do: "cached", "download" (online) or "offline" (missing, offline)."""
    if cached_snapshot(hub_id, revision=revision) is not None:
        return "cached"
    return "offline" if offline() else "download"


def download_command(hub_id: str, revision: str | None = None) -> str:
    return f"hf download {hub_id}" + (f" --revision {revision}" if revision else "")


def download(hub_id: str, revision: str | None, flag: str) -> Path:
    """``snapshot_download`` into the cache (progress bars on stderr); a one-line UserError on failure."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = snapshot_download(hub_id, revision=revision, cache_dir=str(hf_cache_dir()),
                                 allow_patterns=download_patterns(hub_id, revision))
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as err:  # GatedRepoError included
        raise UserError(f"{flag} {hub_id}: the Hugging Face hub refused it ({_first_line(err)}); check the name and "
                        f"revision, log in with 'hf auth login' for gated models, or pass a local folder") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        # Not the command's fault (network, the hub's servers): exit 1, so a script can retry.
        raise DownloadFailed(f"{flag} {hub_id}: downloading it from the Hugging Face hub failed ({_first_line(err)}); "
                             f"rerun to retry (finished files are kept), or pass a local folder") from None
    folder = Path(path)
    if not weights_complete(folder):
        raise UserError(f"{flag} {hub_id}: the download in {folder} has no complete weights (config.json and "
                        f"model.safetensors / pytorch_model.bin or their shards)")
    return folder


# What a model needs: configs, tokenizer files, weights (safetensors preferred by transformers; .bin
# too, since older repositories such as lmsys/vicuna-7b-v1.1 have nothing else). TF / Flax / ONNX
# copies and *.msgpack are left on the hub.
DOWNLOAD_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors", "*.bin", "*.tiktoken", "*.md"]


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def download_patterns(hub_id: str, revision: str | None) -> list[str]:
    """DOWNLOAD_PATTERNS, without ``*.bin`` when the repository has safetensors weights (never both copies)."""
    try:
        from huggingface_hub import list_repo_files

        files = list_repo_files(hub_id, revision=revision)
    except Exception:  # noqa: BLE001  (listing is an optimisation; snapshot_download reports real errors)
        return list(DOWNLOAD_PATTERNS)
    if any(f.endswith(".safetensors") and "/" not in f for f in files):
        return [p for p in DOWNLOAD_PATTERNS if p != "*.bin"]
    return list(DOWNLOAD_PATTERNS)


def locate_hub_model(hub_id: str, revision: str | None, flag: str, missing: str) -> Path:
    """A hub model's local folder: cached, else downloaded when online; offline, ``missing`` (one line)."""
    decision = download_decision(hub_id, revision)
    if decision == "cached":
        found = cached_snapshot(hub_id, revision=revision)
        assert found is not None
        return found
    if decision == "offline":
        raise UserError(missing)
    return download(hub_id, revision, flag)
