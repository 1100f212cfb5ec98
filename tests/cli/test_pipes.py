"""What vltool prints into a pipe or a file is usable by scripts (issue #22).

The real ``vltool`` console script runs as a subprocess with stdout to a pipe or a file and a
narrow ``COLUMNS`` (40), as a shell script would run it: no ANSI codes, no wrapped values,
``recipes show`` byte for byte, ``--json`` alone on stdout.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from support.run import VLTOOL, child_env, vltool

from vltool.config.loader import read_yaml, validate_recipe
from vltool.config.shipped import list_recipes
from vltool.ui.result import as_json, group_manifest
from vltool.ui.tables import show_groups, show_metrics


def run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed console script in a 40-column terminal."""
    return vltool(args, columns=40, env=env, timeout=120)


def test_recipes_show_into_a_file_is_the_recipe_for_every_shipped_recipe(tmp_path: Path) -> None:
    recipes = list_recipes()
    assert len(recipes) >= 10
    for name, path in recipes:
        target = tmp_path / (name.replace("/", "_") + ".yaml")
        with target.open("wb") as handle:  # `vltool recipes show NAME > target`
            done = vltool(["recipes", "show", name], columns=40, stdout=handle, stderr=subprocess.PIPE, timeout=60)
        assert done.returncode == 0, done.stderr
        assert target.read_bytes() == path.read_bytes(), name
        assert yaml.safe_load(target.read_text()) == yaml.safe_load(path.read_text())
        validate_recipe(read_yaml(target), str(target))  # what `transfer -r target` reads first

        resolved = run(["recipes", "show", "--resolved", name])
        assert resolved.returncode == 0, resolved.stderr
        expected = validate_recipe(read_yaml(path), str(path)).model_dump(mode="json")
        assert yaml.safe_load(resolved.stdout) == expected, name


def test_zoo_list_into_a_pipe_keeps_every_row_whole_and_greppable() -> None:
    done = subprocess.run(f"'{VLTOOL}' zoo list | grep Salesforce/blip2-opt-2.7b", shell=True, capture_output=True,
                          text=True, env=child_env(columns=40), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    row = done.stdout.splitlines()[0].split("\t")
    assert row[:3] == ["opt2.7b", "source", "Salesforce/blip2-opt-2.7b"]

    listing = run(["zoo", "list"]).stdout
    assert "\x1b" not in listing
    lines = listing.splitlines()
    assert lines[0] == "# model aliases" and lines[1].split("\t") == ["alias", "role", "resolves to", "local path",
                                                                        "present"]
    assert all(len(line.split("\t")) == 5 for line in lines[1:])  # one row per line: no cell spilled over


def test_recipes_list_into_a_pipe_has_whole_paths() -> None:
    listing = run(["recipes", "list"]).stdout
    assert "\x1b" not in listing
    rows = [line.split("\t") for line in listing.splitlines()[2:]]
    assert [(name, str(path)) for name, path in list_recipes()] == [(r[0], r[2]) for r in rows]


def test_listings_take_json() -> None:
    aliases = json.loads(run(["zoo", "list", "--json"]).stdout)
    blip2 = [a for a in aliases if a["resolves_to"] == "Salesforce/blip2-opt-2.7b"]
    assert blip2 and blip2[0]["alias"] == "opt2.7b" and blip2[0]["present"] in (True, False)
    assert set(aliases[0]) == {"alias", "role", "resolves_to", "local_path", "present"}

    recipes = json.loads(run(["recipes", "list", "--json"]).stdout)
    assert [(r["name"], r["file"]) for r in recipes] == [(n, str(p)) for n, p in list_recipes()]
    assert {r["stage"] for r in recipes} >= {"transfer", "tune-mma", "eval"}


def test_eval_json_is_the_only_stdout_and_the_table_keeps_flags_apart(tmp_path: Path) -> None:
    refs = [{"image": "a.jpg", "caption": ["a red circle on the left", "a red round shape"]},
            {"image": "b.jpg", "caption": ["a blue square", "a small blue square at the top"]}]
    (tmp_path / "test.json").write_text(json.dumps(refs))
    (tmp_path / "preds.jsonl").write_text('{"id": "a", "prediction": "a red circle"}\n'
                                          '{"id": "b", "prediction": "a blue square"}\n')
    args = ["eval", "--predictions", str(tmp_path / "preds.jsonl"), "--data", f"coco:{tmp_path / 'test.json'}"]
    no_java = {"env": {"PATH": str(Path(VLTOOL).parent)}}  # the fast stand-in tokenizer
    as_json_out = run([*args, "--json"], **no_java)
    assert as_json_out.returncode == 0, as_json_out.stderr
    metrics = json.loads(as_json_out.stdout)[f"coco:{tmp_path / 'test.json'}"]["preds.jsonl"]
    assert metrics["CIDEr"] > 0 and metrics["ptb_tokenizer"] == 0

    table = run(args, **no_java).stdout
    rows = {line.split("\t")[0]: line.split("\t")[1] for line in table.splitlines()[2:] if "\t" in line}
    assert "CIDEr" in rows and "ptb_tokenizer" not in rows  # a flag, not a metric
    assert float(rows["CIDEr"].replace(",", "")) == pytest.approx(metrics["CIDEr"], rel=1e-3)
    assert any(line.startswith("note: captions tokenised by") for line in table.splitlines())


MANIFEST = {
    "kind": "vpg", "wall_time_s": 12.5,
    "metrics": {"converter_pairs": 93, "data_images": 48, "end_of_text_id": 5.0, "final_BLEU-4": 3.0,
                "final_CIDEr": 4.7, "final_ptb_tokenizer": 0.0, "final_val_loss": 2.9, "finetune_step_s": 0.2,
                "finetune_steps": 4, "from_scratch": False, "steps_total": 8, "warmup_steps": 4},
}


def test_the_result_is_grouped_with_the_useful_rows_first() -> None:
    groups = group_manifest("runs/vpg", MANIFEST)
    assert list(groups) == ["result", "metrics", "data", "converter", "timing", "other"]
    assert groups["result"] == {"artifact": "runs/vpg", "kind": "vpg", "steps": 8, "wall_time_s": 12.5}
    assert groups["metrics"] == {"BLEU-4": 3.0, "CIDEr": 4.7, "val_loss": 2.9}
    assert groups["data"] == {"images": 48} and groups["converter"] == {"pairs": 93}
    assert groups["timing"] == {"finetune_step_s": 0.2, "finetune_steps": 4, "warmup_steps": 4}
    assert groups["other"] == {"end_of_text_id": 5.0, "ptb_tokenizer": 0.0, "from_scratch": False}
    flat = as_json(groups)
    assert flat["steps"] == 8 and flat["metrics"]["CIDEr"] == 4.7 and "result" not in flat

    sink = io.StringIO()
    show_groups(Console(file=sink, width=40), "result", groups)  # not a terminal: the pipe form
    lines = sink.getvalue().splitlines()
    assert lines[:3] == ["# result", "group\tkey\tvalue", "result\tartifact\truns/vpg"]
    assert lines.index("metrics\tBLEU-4\t3") < lines.index("data\timages\t48") < lines.index("timing\twarmup_steps\t4")


def test_metrics_tables_show_scoring_flags_as_notes() -> None:
    sink = io.StringIO()
    show_metrics(Console(file=sink, width=40), "coco", {"runs/a": {"CIDEr": 1.0, "ptb_tokenizer": 0.0},
                                                        "runs/b": {"CIDEr": 2.0, "ptb_tokenizer": 0.0}})
    lines = sink.getvalue().splitlines()
    assert lines[1:3] == ["metric\ta\tb", "CIDEr\t1\t2"]
    assert not any(line.startswith("ptb_tokenizer") for line in lines)
    assert any("stand-in" in line for line in lines[3:])


def test_third_party_progress_bars_and_retries_are_quiet_unless_debug() -> None:
    import logging

    from transformers.utils import logging as hf_logging

    from vltool.ui.quiet import HUB_HTTP_LOGGER, quiet_third_party

    try:
        quiet_third_party(debug=False)
        assert isinstance(hf_logging.tqdm(range(2), desc="Loading weights"), hf_logging.EmptyTqdm)
        assert logging.getLogger(HUB_HTTP_LOGGER).getEffectiveLevel() == logging.ERROR
        quiet_third_party(debug=True)
        assert not isinstance(hf_logging.tqdm(range(2), desc="Loading weights", disable=True), hf_logging.EmptyTqdm)
        assert logging.getLogger(HUB_HTTP_LOGGER).level == logging.NOTSET
    finally:
        hf_logging.set_tqdm_hook(None)
        logging.getLogger(HUB_HTTP_LOGGER).setLevel(logging.NOTSET)


def test_a_failed_download_exits_1_and_a_refused_name_exits_2(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError

    from vltool.errors import DownloadFailed, UserError
    from vltool.sources import hub_cache

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub_cache, "download_patterns", lambda hub_id, revision: ["*.json"])

    def network_down(*args, **kwargs):
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", network_down)
    with pytest.raises(DownloadFailed, match="acme/model: downloading it .* failed .*Connection reset.*rerun") as err:
        hub_cache.download("acme/model", None, "--dst")
    assert err.value.exit_code == 1

    def not_there(*args, **kwargs):  # a name the hub cannot have (RepositoryNotFoundError: the same branch)
        raise HFValidationError("Repo id must use alphanumeric chars")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", not_there)
    with pytest.raises(UserError, match="acme/model: the Hugging Face hub refused it") as err:
        hub_cache.download("acme/model", None, "--dst")
    assert err.value.exit_code == 2
