"""The decoded on-disk crop cache: built once, atomic, reused, never a wrong file; the batches it feeds."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from common.errors import DataError
from data_loaders import crop_cache
from data_loaders.batches import LoaderBatches, MemmapBatches, TensorBatches, load_crops, make_batches
from data_loaders.crop import crop_dataset
from data_loaders.crop_cache import CACHE_DIR, cache_paths, decoded_crops
from data_loaders.hand_table import HandTable
from data_loaders.synthetic.generate import generate_synthetic_hagrid


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """A tiny synthetic set's crops (32 px), made once for the module."""
    root = tmp_path_factory.mktemp("cache_synth")
    generate_synthetic_hagrid(root / "data", n_subjects=8, images_per_subject=4, seed=2, progress=False)
    crop_dataset(root / "data", root / "crops", size=32, workers=1, progress=False)
    return root / "crops"


@pytest.fixture
def folder(tmp_path, crops):
    """A private copy of the crops (the cache is written inside the folder)."""
    shutil.copytree(crops, tmp_path / "crops")
    return tmp_path / "crops"


def _counting_builds(monkeypatch) -> list:
    calls = []
    real = crop_cache._build

    def build(*a, **kw):
        calls.append(a[2])
        return real(*a, **kw)

    monkeypatch.setattr(crop_cache, "_build", build)
    return calls


def test_built_once_read_only_and_equal_to_decoding_the_jpegs(folder, monkeypatch):
    table = HandTable.from_manifest(folder).split_view("train")
    builds = _counting_builds(monkeypatch)
    a = decoded_crops(table, 24, workers=2)
    assert isinstance(a, np.memmap) and a.shape == (len(table), 3, 24, 24) and not a.flags.writeable
    assert torch.equal(torch.from_numpy(np.array(a)), load_crops(table, 24))
    data, side = cache_paths(table, 24)
    assert data.parent == folder / CACHE_DIR and "24px" in data.name
    assert json.loads(side.read_text())["shape"] == [len(table), 3, 24, 24]
    b = decoded_crops(table, 24)
    assert np.array_equal(a, b) and len(builds) == 1  # reused, not rebuilt
    assert not [p for p in data.parent.iterdir() if p.name.startswith(".tmp-")]


def test_another_table_size_or_a_rewritten_crop_never_reuses_the_file(folder):
    table = HandTable.from_manifest(folder)
    train, val = table.split_view("train"), table.split_view("val")
    names = {cache_paths(t, s)[0].name for t, s in ((train, 24), (train, 32), (val, 24), (table, 24))}
    assert len(names) == 4
    decoded_crops(train, 24), decoded_crops(val, 24)
    before = cache_paths(train, 24)[0].name
    crop = train.crop_paths[0]
    with open(crop, "ab") as f:
        f.write(b"\0")  # a crop rewritten since (here: bytes appended after the JPEG's end)
    assert cache_paths(train, 24)[0].name != before
    decoded_crops(train, 24)
    assert not (folder / CACHE_DIR / before).exists()  # the older version of the same cache is gone
    assert cache_paths(val, 24)[0].exists()  # another table's cache stays


@pytest.mark.parametrize("damage", ["truncate", "sidecar"])
def test_a_short_file_or_a_wrong_sidecar_is_rebuilt(folder, monkeypatch, damage):
    table = HandTable.from_manifest(folder).split_view("train")
    good = np.array(decoded_crops(table, 24))
    data, side = cache_paths(table, 24)
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:1000])
    else:
        side.write_text(side.read_text().replace('"format": 1', '"format": 0'))
    builds = _counting_builds(monkeypatch)
    assert np.array_equal(decoded_crops(table, 24), good) and len(builds) == 1


def test_a_bad_crop_is_a_data_error_naming_it_and_leaves_no_cache(folder, monkeypatch):
    monkeypatch.setattr(crop_cache, "CHUNK", 4)  # several tasks: the process pool's path too
    table = HandTable.from_manifest(folder).split_view("train")
    victim = table.crop_paths[3]
    with open(victim, "wb") as f:
        f.write(b"not a jpeg")
    for workers in (1, 2):
        with pytest.raises(DataError, match="damaged crop") as e:
            decoded_crops(table, 24, workers=workers)
        assert victim in str(e.value) and "\n" not in str(e.value)
    assert [p.suffix for p in (folder / CACHE_DIR).iterdir()] == [".lock"]


def test_concurrent_openers_share_one_build(folder, monkeypatch):
    table = HandTable.from_manifest(folder).split_view("train")
    builds = _counting_builds(monkeypatch)
    out = [None] * 4
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, decoded_crops(table, 24))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and all(np.array_equal(o, out[0]) for o in out)


def _batches(table, **kw):
    return make_batches(table, inputs=("image", "landmarks"), image_size=24, landmark_norm="wrist", batch_size=5,
                        shuffle=True, seed=7, device=torch.device("cpu"), num_workers=0, **kw)


def test_memmap_jpeg_and_in_memory_batches_are_the_same_batches(folder):
    table = HandTable.from_manifest(folder).split_view("train")
    cached, jpeg = _batches(table, in_memory="no"), _batches(table, in_memory="no", decoded_cache=False)
    held = _batches(table, in_memory="yes")
    assert isinstance(cached, MemmapBatches) and isinstance(jpeg, LoaderBatches) and type(held) is TensorBatches
    for b in (cached, jpeg, held):
        b.set_epoch(2)
    runs = [list(b) for b in (cached, jpeg, held)]
    assert len(runs[0]) == len(runs[1]) == len(runs[2]) == len(cached)
    for x, y, z in zip(*runs):
        assert x.keys() == y.keys() == z.keys() and {"image", "label", "index", "landmarks"} <= set(x)
        for k in x:
            assert torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]), k
    if hasattr(table, "handedness"):
        assert "handedness" in runs[0][0]


def test_a_folder_that_cannot_hold_the_cache_falls_back_to_the_jpegs(folder, caplog):
    (folder / CACHE_DIR).write_text("a file where the cache folder would go")
    table = HandTable.from_manifest(folder).split_view("train")
    assert isinstance(_batches(table, in_memory="no"), LoaderBatches)
    assert "reading the JPEGs instead" in caplog.text


def test_a_full_disk_while_building_falls_back_to_the_jpegs_and_leaves_no_temporary_file(folder, monkeypatch, caplog):
    def full(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(crop_cache, "_decode_chunk", full)
    table = HandTable.from_manifest(folder).split_view("train")
    assert decoded_crops(table, 24) is None and "No space left on device" in caplog.text
    assert [p.suffix for p in (folder / CACHE_DIR).iterdir()] == [".lock"]
