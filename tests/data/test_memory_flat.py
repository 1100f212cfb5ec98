"""Memory that does not grow with the data (#23): the flat per-sample index and the chunked converter fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vltool.data.coco import read_coco
from vltool.data.images import check_images, drop_bad_images
from vltool.data.sample import Sample
from vltool.data.sample_table import IndexBuilder, SampleTable, StringColumn, compact, join
from vltool.data.vl_dataset import VLDataset
from vltool.models import word_converter


def _samples() -> list[Sample]:
    return [
        Sample("1", "/img/a.jpg", "", "a dog", ["a dog"], {"image_file": "a.jpg"}),
        Sample("2", "/img/a.jpg", "Question: what?", "a cat", ["a cat", "cat", "kitten"]),
        Sample("3", None, "Instruction: say hi\nResponse:", "héllo ✓", ["héllo ✓"], {"turn": 2, "choices": ["x"]}),
        Sample("4", "/img/b.jpg", "", "", [], {}),
    ]


def test_table_gives_back_every_sample_and_stores_each_image_once() -> None:
    samples = _samples()
    table = compact(samples)
    assert isinstance(table, SampleTable)
    assert list(table) == samples
    assert table[-1] == samples[-1] and list(table[1:3]) == samples[1:3]
    assert list(table.images) == ["/img/a.jpg", "/img/b.jpg"]
    assert table.image_index.tolist() == [0, 0, -1, 1]
    assert list(join([table, table[:2]])) == samples + samples[:2]
    with pytest.raises(IndexError):
        table[4]


def test_in_memory_images_stay_a_list() -> None:
    pil = Sample("p", Image.new("RGB", (2, 2)), "", "x", ["x"])
    assert compact([pil]) == [pil]


def test_rows_from_a_table_equal_rows_from_the_list() -> None:
    samples = _samples()
    from_list, from_table = IndexBuilder(), IndexBuilder()
    rows_list, rows_table = from_list.rows(samples, str.upper), from_table.rows(compact(samples), str.upper)
    assert list(rows_list) == list(rows_table) == [(0, "", "A DOG"), (0, "Question: what?", "A CAT"),
                                                 (-1, "Instruction: say hi\nResponse:", "HÉLLO ✓"), (1, "", "")]
    assert list(from_list.images()) == list(from_table.images()) == ["/img/a.jpg", "/img/b.jpg"]
    dataset = VLDataset(compact(samples), None, image_root="/elsewhere")
    assert isinstance(dataset.images.images, StringColumn) and dataset[3] == (1, "", "")


def test_image_check_reads_the_table_columns(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    samples = [Sample(str(i), str(tmp_path / f"{'ab'[i % 2]}.jpg"), "", "x") for i in range(5)] + \
        [Sample("t", None, "", "y"), Sample("m", str(tmp_path / "missing.jpg"), "", "z")]
    table = compact(samples)
    by_list, by_table = check_images(samples), check_images(table)
    assert vars(by_list) == vars(by_table)
    assert (by_table.checked, by_table.samples_with_images, by_table.affected_samples) == (3, 6, 3)
    kept = drop_bad_images(table, by_table)
    assert isinstance(kept, SampleTable) and [s.id for s in kept] == ["0", "2", "4", "t"]


def test_coco_index_costs_a_few_hundred_bytes_a_caption(tmp_path: Path) -> None:
    """5 captions per image as COCO; bench/json_index.py measures process memory at 1M entries."""
    rows = [{"image": f"train2014/COCO_train2014_{i // 5:012d}.jpg", "caption": f"a man riding a wave on top of a "
             f"surfboard number {i}", "image_id": f"coco_{i // 5}"} for i in range(20_000)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(rows))
    table = read_coco(path, "/data/coco")
    assert len(table) == 20_000 and len(table.images) == 4_000
    assert table[7].image == "/data/coco/train2014/COCO_train2014_000000000001.jpg"
    assert table.nbytes / len(table) < 250


def _old_fit(src, tgt, captions, lr, epochs, batch_captions, seed):
    """The fit before #23 (one tensor per caption, one forward per step): the arithmetic to keep."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    g = torch.nn.Linear(src.shape[1], tgt.shape[1])
    optim = torch.optim.SGD(g.parameters(), lr=lr)
    rows = [torch.tensor(c, dtype=torch.long) for c in captions if c]
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        for start in range(0, len(order), batch_captions):
            idx = torch.cat([rows[i] for i in order[start:start + batch_captions]])
            loss = (1 - torch.nn.functional.cosine_similarity(g(src[idx]), tgt[idx], dim=-1)).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
    return g


def test_converter_fit_in_chunks_is_the_same_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(50, 8, generator=gen), torch.randn(50, 12, generator=gen)
    lengths = torch.randint(0, 9, (300,), generator=gen).tolist()
    captions = [torch.randint(0, 50, (n,), generator=gen).tolist() for n in lengths]
    old = _old_fit(src, tgt, captions, 5.0, 3, 64, 0)
    whole = word_converter.fit_sgd(src, tgt, captions, 5.0, 3, 64, 0)
    assert torch.equal(old.weight, whole.weight) and torch.equal(old.bias, whole.bias)  # one chunk: bit-equal
    monkeypatch.setattr(word_converter, "CHUNK_ROWS", 7)  # many chunks a step: the same fit up to rounding
    chunked = word_converter.fit_sgd(src, tgt, captions, 5.0, 3, 64, 0)
    torch.testing.assert_close(chunked.weight, whole.weight, rtol=0, atol=1e-5)


def test_converter_captions_are_one_flat_array() -> None:
    rows = word_converter.RaggedRows.of([[3, 1, 3], [], [2], [0, 2]])
    assert list(rows) == [[3, 1, 3], [], [2], [0, 2]] and rows.flat.tolist() == [3, 1, 3, 2, 0, 2]
    # pairs 1 and 2 kept (as 0 and 1): captions left empty go, as the list version dropped them
    kept = rows.remap(np.array([-1, 0, 1, -1]))
    assert list(kept) == [[0], [1], [1]]
