"""Mixing sources by ratio, wds: shards, VG/SBU readers and the BLIP-2 train transform."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.data_files import jpeg_bytes, write_shard

from vltool.data.augment import Blip2TrainTransform
from vltool.data.captions import read_caption_list
from vltool.data.mixture import MixedVLData, MixtureBatchSampler, Source, bad_samples
from vltool.data.sample import Sample
from vltool.data.specs import load_spec, split_ratio
from vltool.data.wds import ShardStream, expand_braces, shard_paths
from vltool.errors import UserError


def test_ratio_specs() -> None:
    assert split_ratio("coco:A.json@0.1") == ("coco:A.json", 0.1)
    assert split_ratio("wds:/laion/{00000..00009}.tar@0.7") == ("wds:/laion/{00000..00009}.tar", 0.7)
    assert split_ratio("coco:a@b/A.json") == ("coco:a@b/A.json", None)
    for bad in ("coco:A.json@0", "coco:A.json@-1", "coco:A.json@x"):
        with pytest.raises(UserError, match="ratio"):
            split_ratio(bad)
    with pytest.raises(UserError, match="warmup, transfer and tune-mma"):
        load_spec("coco:A.json@0.5")
    assert expand_braces("s/{000..002}.tar") == ["s/000.tar", "s/001.tar", "s/002.tar"]
    assert expand_braces("{a,b}{1..2}") == ["a1", "a2", "b1", "b2"]


def _sampler(start: int = 0, total: int = 40, rank: int = 0, world: int = 1) -> MixtureBatchSampler:
    return MixtureBatchSampler([50, 30, None], [0.1, 0.2, 0.7], ["a", "b", "c"], 4, 2, world, rank, 5, total, start)


def test_mixture_sampler_is_seeded_resumable_and_follows_ratios() -> None:
    full = list(_sampler())
    assert full == list(_sampler())
    assert list(_sampler(start=13)) == full[13 * 2:]
    counts = np.bincount([keys[0][0] for keys in full], minlength=3) / len(full)
    assert abs(counts[2] - 0.7) < 0.15 and counts[0] < counts[1] < counts[2]
    assert all(len({k[0] for k in keys}) == 1 for keys in full)  # one source per micro-batch
    draws = [k[2] for keys in full for k in keys]
    assert len(set(draws)) == len(draws)  # every sample has its own augmentation seed
    # map-style sources are walked in a permutation: no repeats within a pass
    a = [k[1] for keys in full for k in keys if k[0] == 1][:30]
    assert len(set(a)) == len(a)
    state = _sampler().state(13)
    assert state["draws"] == 26 and sum(state["positions"].values()) == 26 * 4
    _sampler(start=13).check_state(state)
    with pytest.raises(UserError, match="data positions"):
        _sampler(start=12).check_state(state)
    # two processes share each source's positions without overlap
    r0, r1 = list(_sampler(world=2)), list(_sampler(rank=1, world=2))
    for k0, k1 in zip(r0, r1):
        assert k0[0][0] == k1[0][0]
        if k0[0][0] != 2:
            assert not {k[1] for k in k0} & {k[1] for k in k1}


def test_wds_stream_reads_shards_in_a_seeded_order_and_seeks(tmp_path: Path) -> None:
    for s in range(3):
        write_shard(tmp_path / f"{s:03d}.tar", [f"s{s}k{i}" for i in range(5)])
    shards = shard_paths(str(tmp_path / "{000..002}.tar"))
    stream = ShardStream(shards, 0, 1, seed=1)
    seen = [stream.get(p)[1] for p in range(15)]
    assert sorted(seen) == sorted(f"caption s{s}k{i}" for s in range(3) for i in range(5))
    assert [stream.get(p)[1] for p in (3, 14, 2)] == [seen[3], seen[14], seen[2]]  # random access
    assert stream.get(15)[1] in seen  # the next epoch
    fresh = ShardStream(shards, 0, 1, seed=1)
    assert fresh.get(11)[1] == seen[11]  # resuming seeks, same sample
    rank1 = ShardStream(shards, 1, 2, seed=1)
    assert {rank1.get(p)[1].split("k")[0] for p in range(5)} == {"caption s1"}
    with pytest.raises(UserError, match="do not exist"):
        shard_paths(str(tmp_path / "{000..004}.tar"))


def test_bad_wds_samples_fail_in_one_line_or_are_skipped_and_counted(tmp_path: Path) -> None:
    shard = write_shard(tmp_path / "000.tar", ["a", "b", "c", "d"], {"b": "corrupt", "c": "nocaption"})
    source = Source("wds:x", None, shards=[shard], size=4)
    strict = MixedVLData([source], preprocess=lambda im: torch.zeros(1))
    strict.batch_sampler(1, 1, 1, 0, 0, 4, 0)
    errors = 0
    for p in range(4):
        try:
            strict[(0, p, p)]
        except UserError as err:
            errors += 1
            assert "--skip-bad-images" in str(err) and "\n" not in str(err)
    assert errors == 2
    lenient = MixedVLData([source], preprocess=lambda im: torch.zeros(1), skip_bad=True)
    lenient.bad_log = tmp_path / "bad"
    lenient.batch_sampler(1, 1, 1, 0, 0, 4, 0)
    rows = [lenient[(0, p, p)] for p in range(4)]
    assert all(r[2].startswith("caption ") for r in rows)
    found = bad_samples(lenient.bad_log)
    assert len(found) == 2 and any("corrupt" in b for b in found) and any("no caption" in b for b in found)


def test_map_sources_decode_in_getitem_and_skip_bad_images(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(jpeg_bytes(i) if i != 1 else b"junk")
        paths.append(path)
    samples = [Sample(str(i), p, "", f"cap {i}") for i, p in enumerate(paths)]
    def decode(path) -> torch.Tensor:
        with Image.open(path) as handle:
            return torch.tensor(handle.convert("RGB").size)

    data = MixedVLData([Source("coco:x", None, samples=samples, size=4)], preprocess=decode, skip_bad=True)
    data.bad_log = tmp_path / "bad"
    assert data[(0, 1, 0)][2] == "cap 2" and len(bad_samples(data.bad_log)) == 1
    data.use_features = True
    assert data[(0, 3, 0)] == (3, "", "cap 3")


def test_blip2_train_transform_is_deterministic_per_draw() -> None:
    class Proc:
        size, image_mean, image_std = {"height": 16, "width": 16}, [0.5] * 3, [0.5] * 3

    transform = Blip2TrainTransform(Proc())
    image = Image.open(io.BytesIO(jpeg_bytes(0, (40, 30))))
    a, b, c = transform(image, 7), transform(image, 7), transform(image, 8)
    assert a.shape == (3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        left, top, right, bottom = transform.crop_box(400, 300, g)
        area = (right - left) * (bottom - top) / (400 * 300)
        assert 0.45 <= area <= 1.0 and 0 <= left < right <= 400 and 0 <= top < bottom <= 300


def test_vg_and_sbu_caption_files(tmp_path: Path) -> None:
    lavis = tmp_path / "vg_caption.json"
    lavis.write_text(json.dumps([{"image": "VG_100K/1.jpg", "caption": "a red car", "image_id": "vg_1"}]))
    (s,) = read_caption_list(lavis, "/vg", "vg")
    assert s.image == "/vg/VG_100K/1.jpg" and s.answer == "a red car" and s.id == "vg_1"
    official = tmp_path / "region_descriptions.json"
    official.write_text(json.dumps([{"id": 5, "regions": [{"image_id": 5, "phrase": "a dog"},
                                                          {"image_id": 5, "phrase": "grass"}]}]))
    assert [x.answer for x in read_caption_list(official, None, "vg")] == ["a dog", "grass"]
    sbu = tmp_path / "sbu.json"
    sbu.write_text(json.dumps([{"image": "a.jpg", "caption": "sky", "url": "http://x"}]))
    assert load_spec(f"sbu:{sbu}")[0].image == str(tmp_path / "a.jpg")
    with pytest.raises(UserError, match="caption"):
        sbu.write_text(json.dumps([{"image": "a.jpg"}]))
        load_spec(f"sbu:{sbu}")
