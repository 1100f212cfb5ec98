"""Writing and reading artifacts: the folders that flow between stages.

An artifact is a folder with ``manifest.json`` (what it is, how it was made, the sha256 of
every file) next to ``.safetensors`` weights and JSON configs. It is written into a temporary
sibling folder and renamed into place only when complete, so a crash never leaves a
half-written artifact, and an existing folder is only replaced with ``force``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from vltool import __version__
from vltool.artifacts.disk_space import guard, size_of
from vltool.artifacts.environment import package_versions
from vltool.artifacts.fingerprint import sha256_file
from vltool.errors import UserError

SCHEMA_VERSION = 1
KINDS = ("vpg", "adapters", "model", "eval", "world")
MANIFEST = "manifest.json"


def ensure_writable(out_dir: Path, force: bool) -> None:
    """Refuse to touch an existing output unless ``force``; checked BEFORE any work starts."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise UserError(f"{out_dir} already exists; pass --force to replace it or choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")


class ArtifactWriter:
    """Build an artifact in a temporary folder; ``commit`` hashes, writes the manifest, renames.

    Use as a context manager: leaving the block with an exception removes the temporary folder
    and leaves any previous artifact untouched.
    """

    def __init__(self, out_dir: Path, kind: str, force: bool = False, started: float | None = None) -> None:
        """``started``: ``time.perf_counter()`` when the stage began, so ``wall_time_s`` is the stage's."""
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        self.out_dir = Path(out_dir)
        ensure_writable(self.out_dir, force)
        self.kind = kind
        self.force = force
        self.path = self.out_dir.parent / f".tmp-{self.out_dir.name}-{os.getpid()}"
        self.manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "vltool_version": __version__,
            "packages": package_versions(),
            "command": " ".join(["vltool", *sys.argv[1:]]) if sys.argv else "",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "inputs": {},
            "metrics": {},
        }
        self._started = time.perf_counter() if started is None else started
        self._before = self._current = 0
        # what a full disk leaves for the user, said in the error: by default the training stages' run
        # folder beside --out (``.OUT.run``, see stages.scaffold.run_root), whose last checkpoint --resume reads
        run = self.out_dir.parent / f".{self.out_dir.name}.run"
        self.kept = (f"the run's checkpoints in {run} are kept: free space and rerun the same command with --resume"
                     if run.is_dir() else "")

    def __enter__(self) -> Self:
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            with guard(self.path, self._needed, "the artifact", cleanup=self.path, kept=self.kept):
                self.commit()
            return
        if isinstance(exc, Exception):
            # a full disk anywhere in the block: one line naming the filesystem (#23); the temp folder goes
            with guard(self.path, self._needed, "the artifact", cleanup=self.path, kept=self.kept):
                raise exc
        shutil.rmtree(self.path, ignore_errors=True)

    def _needed(self) -> int:
        """Bytes the artifact needs: what is written so far, or that plus the write in progress."""
        return max(size_of(self.path), self._before + self._current)

    def save_tensors(self, name: str, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
        from safetensors.torch import save_file

        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        self._before, self._current = size_of(self.path), sum(v.numel() * v.element_size() for v in tensors.values())
        save_file(tensors, str(target), metadata)
        return target

    def save_json(self, name: str, data: Any) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        return target

    def add_input(self, role: str, source: str, fingerprint: str, **extra: Any) -> None:
        self.manifest["inputs"][role] = {"source": source, "fingerprint": fingerprint, **extra}

    def commit(self) -> Path:
        files = {
            str(p.relative_to(self.path)): sha256_file(p)
            for p in sorted(self.path.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        self.manifest["files"] = files
        self.manifest.setdefault("wall_time_s", round(time.perf_counter() - self._started, 3))
        (self.path / MANIFEST).write_text(json.dumps(self.manifest, indent=2, default=str) + "\n")
        backup = None
        if self.out_dir.exists():
            backup = self.out_dir.parent / f".old-{self.out_dir.name}-{os.getpid()}"
            self.out_dir.rename(backup)
        self.path.rename(self.out_dir)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return self.out_dir


@dataclass
class Artifact:
    """A verified artifact on disk."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def file(self, name: str) -> Path:
        target = self.path / name
        if not target.is_file():
            raise UserError(f"artifact {self.path} has no file {name!r} (its kind is {self.kind!r})")
        return target

    def json(self, name: str) -> Any:
        return json.loads(self.file(name).read_text())

    def tensors(self, name: str) -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.file(name)))


def is_artifact(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_artifact(path: Path, kinds: tuple[str, ...] | None = None, verify: bool = True) -> Artifact:
    """Open an artifact, check its kind and (by default) every file's sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{path} is not a vltool artifact: it has no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{manifest_path} is not valid JSON (line {err.lineno}): {err.msg}") from None
    kind = manifest.get("kind")
    if kinds is not None and kind not in kinds:
        raise UserError(f"{path} is a {kind!r} artifact; expected {' or '.join(repr(k) for k in kinds)}")
    if manifest.get("schema_version", 0) > SCHEMA_VERSION:
        raise UserError(
            f"{path} was written by a newer vltool (schema {manifest['schema_version']}); upgrade vltool"
        )
    if verify:
        for name, expected in manifest.get("files", {}).items():
            target = path / name
            if not target.is_file():
                raise UserError(f"artifact {path} is incomplete: {name} listed in the manifest is missing")
            if sha256_file(target) != expected:
                raise UserError(f"artifact {path} was modified: {name} does not match its sha256 in the manifest")
    return Artifact(path=path, manifest=_current_names(manifest))


def _current_names(manifest: dict[str, Any]) -> dict[str, Any]:
    """Old artifacts read with today's names: ``vltool convert`` called its vision input ``vit`` before
    #24, where every other artifact says ``vision``."""
    inputs = manifest.get("inputs")
    if isinstance(inputs, dict) and "vit" in inputs and "vision" not in inputs:
        manifest["inputs"] = {("vision" if k == "vit" else k): v for k, v in inputs.items()}
    return manifest
