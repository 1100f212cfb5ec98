"""The demo world is a plugin: registries learn its kind, metrics and aliases without importing it."""

from __future__ import annotations

from support.run import python


def test_lower_layers_do_not_import_the_demo_world_until_asked() -> None:
    code = (
        "import sys\n"
        "import vltool.data.specs, vltool.eval.scoring, vltool.sources.aliases, vltool.stages.vpgtrans\n"
        "print(any(m.startswith('vltool.demo') for m in sys.modules))\n"
        "from vltool.eval.scoring import metric_family\n"
        "from vltool.sources.aliases import find_alias\n"
        "print(metric_family('demo:sqa'), metric_family('demo:caption'), find_alias('demo-llama', 'target').role)\n"
        "print(sorted(m for m in sys.modules if m.startswith('vltool.demo')))\n"
    )
    done = python("-c", [code])
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "False"
    assert out[1] == "sqa caption target"
    assert out[2] == "['vltool.demo', 'vltool.demo.plugin']"  # the plugin alone; datasets load when read


def test_demo_caption_metrics_apply_only_to_demo_samples() -> None:
    from vltool.data.sample import Sample
    from vltool.eval.scoring import score

    plain = [Sample("1", "x.png", "", "a red circle", ["a red circle"])]
    assert "attr_acc" not in score("coco:k.json", plain, ["a red circle"], meteor=False)
