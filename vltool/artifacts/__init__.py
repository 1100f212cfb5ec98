"""Artifacts: self-describing, atomically written folders that flow between stages."""

from vltool.artifacts.store import (
    Artifact,
    ArtifactWriter,
    ensure_writable,
    is_artifact,
    read_artifact,
)

__all__ = ["Artifact", "ArtifactWriter", "ensure_writable", "is_artifact", "read_artifact"]
