"""Model aliases: the short names users type (``opt2.7b``, ``vicuna7b``, ``demo-llama``).

An alias means different models in different roles, which is how the papers speak: as a VPGTrans
*source* ``opt2.7b`` is BLIP-2 OPT-2.7B (Salesforce/blip2-opt-2.7b), as a *target* it is the
plain OPT-2.7B causal LM (facebook/opt-2.7b). Roles: ``source`` (a BLIP-2 model whose VPG is
transferred), ``target`` (a causal LM that gets eyes), ``vision`` (a CLIP encoder for LaVIN),
``qformer`` (a BLIP-2 stage-1 Q-Former, the start of the training-from-scratch baseline:
``blip2-stage1`` = Salesforce/blip2-itm-vit-g, transformers' conversion of LAVIS's stage-1
``blip2_pretrained.pth`` as a ``Blip2ForImageTextRetrieval``).

Real aliases resolve ONLY through the local Hugging Face cache (see ``hub_cache``); when absent
they fail with the exact download command and the flag to pass a folder instead. Choices:
``llama7b`` = huggyllama/llama-7b (the original LLaMA-7B converted to HF format, ungated; the
LLaMA the VPGTrans paper used), ``vicuna7b`` = lmsys/vicuna-7b-v1.1 (the first Vicuna released
as full HF weights rather than a delta; VL-Vicuna's LLM family). Any other LLaMA/Vicuna works as
a folder path.

Other parts of vltool add their own aliases with ``register_alias`` (the demo world registers
``demo-*`` aliases that point into ``VLTOOL_HOME``); the built-in demo rows below are defaults it
may replace. ``vltool zoo list`` prints ``list_aliases()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vltool.errors import UserError
from vltool.plugins import load_plugins
from vltool.sources.hub_cache import (
    cached_snapshot,
    download_command,
    hf_cache_dir,
    locate_hub_model,
    partial_snapshot,
    split_revision,
)

ROLES = ("source", "target", "vision", "qformer")
PathSpec = Path | str | Callable[[], Path | str]


@dataclass(frozen=True)
class Alias:
    """One (name, role) entry. Either ``hub_id`` (looked up in the HF cache) or ``locate``."""

    name: str
    role: str
    hub_id: str | None = None
    arch: str | None = None  # file stem under vltool/sources/arch: the architecture for --dry-run
    note: str = ""
    locate: Callable[[], Path] | None = None  # local aliases: where the folder/file should be
    missing_hint: str = ""  # local aliases: what to do when it is not there


class AliasRow(NamedTuple):
    """A row of ``vltool zoo list``."""

    alias: str
    role: str
    hub_id: str | None
    path: Path | None
    present: bool


_REGISTRY: dict[tuple[str, str], Alias] = {}


def _as_locator(path: PathSpec) -> Callable[[], Path]:
    if callable(path):
        return lambda: Path(path()).expanduser()
    return lambda: Path(path).expanduser()


def register_alias(name: str, role: str, *, hub_id: str | None = None, path: PathSpec | None = None,
                   arch: str | None = None, note: str = "", missing_hint: str = "") -> Alias:
    """Add (or replace) the alias ``name`` in ``role``.

    Give ``hub_id`` for a model that lives in the HF cache, or ``path`` (a folder/file, or a
    zero-argument callable returning one, evaluated at every lookup so that an environment
    variable such as ``VLTOOL_HOME`` set later still counts). Registering the same (name, role)
    again replaces the entry, so a module that registers at import time can be imported twice.
    """
    if role not in ROLES:
        raise ValueError(f"alias role must be one of {ROLES}, not {role!r}")
    if (hub_id is None) == (path is None):
        raise ValueError(f"alias {name!r}: give exactly one of hub_id and path")
    alias = Alias(name, role, hub_id, arch, note, None if path is None else _as_locator(path), missing_hint)
    _REGISTRY[(name, role)] = alias
    return alias


def unregister_alias(name: str, role: str) -> None:
    """Remove an alias (tests use it to undo a registration)."""
    _REGISTRY.pop((name, role), None)


def all_aliases() -> list[Alias]:
    load_plugins()
    return list(_REGISTRY.values())


def find_alias(name: str, role: str) -> Alias | None:
    load_plugins()
    return _REGISTRY.get((name, role))


def _present(path: Path) -> bool:
    return path.is_file() or (path / "config.json").is_file() or (path / "manifest.json").is_file()


def names_alias(spec: str, role: str | None = None) -> bool:
    """True when ``spec`` is a bare alias name (in ``role``, or any role).

    A bare name means the alias even if a folder of that name sits in the working directory
    (``./name`` means the folder): a stray ``demo-opt-l/`` in the cwd must not silently replace
    the model a recipe names.
    """
    if "/" in spec or "\\" in spec or spec.startswith((".", "~")):
        return False
    roles = [role] if role else sorted({a.role for a in all_aliases()})
    return any(find_alias(spec, r) is not None for r in roles)


def alias_path(alias: Alias) -> Path | None:
    """Where an alias lives on this machine, or None when it is not there (no network, ever)."""
    if alias.hub_id is not None:
        return cached_snapshot(alias.hub_id)
    assert alias.locate is not None
    path = alias.locate()
    return path if _present(path) else None


def list_aliases() -> list[AliasRow]:
    """Every alias with what it resolves to: rows for ``vltool zoo list``."""
    rows = []
    for alias in sorted(all_aliases(), key=lambda a: (a.hub_id is None, a.name, ROLES.index(a.role))):
        path = alias_path(alias)
        rows.append(AliasRow(alias.name, alias.role, alias.hub_id, path, path is not None))
    return rows


def _missing_message(alias: Alias, flag: str, revision: str | None = None) -> str:
    if alias.hub_id is None:
        expected = alias.locate() if alias.locate else "?"
        hint = alias.missing_hint or f"build or copy it there, or pass the folder as {flag} PATH"
        return f"{flag} {alias.name}: {expected} does not exist yet; {hint}"
    return hub_missing_message(alias.hub_id, flag, revision, f"{alias.name} means {alias.hub_id}")


def hub_missing_message(hub_id: str, flag: str, revision: str | None = None, what: str | None = None) -> str:
    """The one line for a hub model that is neither cached nor downloadable (offline)."""
    partial = partial_snapshot(hub_id)
    at = f" at revision {revision}" if revision else ""
    state = (f"its download in {partial} is incomplete (weights missing)" if partial is not None and not revision
             else f"it is not in the local Hugging Face cache ({hf_cache_dir()}){at}")
    command = download_command(hub_id, revision)
    return (f"{flag} {what or hub_id}, but {state} and HF_HUB_OFFLINE is set; unset it to download, or where "
            f"there is internet run '{command}' and copy the cache here or set HF_HOME / HF_HUB_CACHE to it, or "
            f"pass the model folder as {flag} PATH")


def resolve_alias(name: str, role: str, flag: str, revision: str | None = None) -> Path:
    """An alias's local folder (a hub alias downloads when online), or a UserError saying what to do."""
    name, own = split_revision(name)
    revision = revision or own
    alias = find_alias(name, role)
    if alias is None:
        known = sorted({a.name for a in _REGISTRY.values() if a.role == role})
        other = sorted(a.role for a in _REGISTRY.values() if a.name == name)
        if other:
            raise UserError(f"{flag} {name!r} is a {'/'.join(other)} alias, not a {role} alias "
                            f"(known {role} aliases: {', '.join(known)})")
        raise UserError(f"{flag} {name!r} is neither a folder, a file nor a known {role} alias "
                        f"({', '.join(known)})")
    if alias.hub_id is not None:
        return locate_hub_model(alias.hub_id, revision, flag, _missing_message(alias, flag, revision))
    if revision:
        raise UserError(f"{flag} {name} is a local alias; --revision applies to hub models only")
    path = alias_path(alias)
    if path is None:
        raise UserError(_missing_message(alias, flag))
    return path


def _register_builtins() -> None:
    """The real-scale aliases: data in ``hub_aliases.json`` (name, role, hub id, shipped architecture
    under ``arch/`` for ``--dry-run``, note); plugins add more through ``register_alias``."""
    table = json.loads((Path(__file__).parent / "hub_aliases.json").read_text())
    for row in table:
        register_alias(row["name"], row["role"], hub_id=row["hub_id"], arch=row["arch"], note=row["note"])


_register_builtins()
