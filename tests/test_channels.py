"""Channel health, top images and activation maximisation; demo-shapes checks; the similarity CLI."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import extractor.channels as channels_module
from extractor import FeatureExtractor, feature_layers, load_backbone, representative_layers
from extractor.__main__ import main
from extractor.activation_max import ActivationMaxError, activation_maximisation
from extractor.channels import ChannelError, channel_stats, crop_window, stats_frame, top_images
from extractor.cka import cka_matrix
from extractor.demo import export_demo_set, load_demo_set
from extractor.receptive_field import ReceptiveField, cell_region, receptive_fields


def test_doctests():
    assert doctest.testmod(channels_module, extraglobs={"np": np}).failed == 0


def test_status_sparsity_and_never_positive():
    mx = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 3.0, 1.0]])
    s = channel_stats(mx)
    assert s.rectified and [c.status for c in s.channels] == ["dead", "always on", "active"]
    assert [c.sparsity for c in s.channels] == [1.0, 0.0, 0.5]
    assert s.dead_share == pytest.approx(1 / 3) and s.always_on_share == pytest.approx(1 / 3)
    pre_relu = mx - 5.0  # a convolution before its ReLU: negative is normal, not broken
    s2 = channel_stats(pre_relu)
    assert not s2.rectified and all(c.status == "never positive" for c in s2.channels)
    assert list(stats_frame(s).sort_values("sparsity")["channel"]) == [1, 2, 0]


def test_selectivity_formula_and_na_for_silent_channels():
    rng = np.random.default_rng(0)
    labels = ["a"] * 5 + ["b"] * 5 + ["c"] * 5 + [None]
    act = np.abs(rng.normal(size=(16, 3)))
    act[:, 2] = 0.0
    s = channel_stats(act, labels)
    means = [act[[i for i, y in enumerate(labels) if y == k], 0].mean() for k in "abc"]
    mu_max, mu_rest = max(means), (sum(means) - max(means)) / 2
    assert s.channels[0].selectivity == pytest.approx((mu_max - mu_rest) / (mu_max + mu_rest))
    assert s.channels[0].top_class == "abc"[int(np.argmax(means))]
    assert np.isnan(s.channels[2].selectivity) and s.channels[2].top_class is None
    assert np.isnan(channel_stats(act).mean_selectivity)  # no labels: not defined
    with pytest.raises(ChannelError, match="one label per image"):
        channel_stats(act, ["a"])


def test_top_images_are_the_k_highest_by_brute_force():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(30, 5, 6, 4)).astype(np.float32)  # raw maps of 30 images
    mx = raw.max(axis=(1, 2))
    calls = []

    def maps(idx):
        calls.append(list(idx))
        return raw[list(idx)]

    for channel in range(4):
        t = top_images(mx, channel, k=9, maps=maps)
        brute = sorted(range(30), key=lambda i: -raw[i, :, :, channel].max())[:9]
        assert list(t.highest_indices) == brute
        assert list(t.lowest_indices) == sorted(range(30), key=lambda i: raw[i, :, :, channel].max())[:9]
        for r in t.highest + t.lowest:
            row, col = r.position
            assert raw[r.index, row, col, channel] == pytest.approx(raw[r.index, :, :, channel].max())
            assert r.value == pytest.approx(raw[r.index, :, :, channel].max())
    assert all(len(c) <= 18 for c in calls)  # only the ranked images' maps are asked for
    with pytest.raises(ChannelError, match="out of range"):
        top_images(mx, 4)


def test_crop_window_is_the_peak_cells_receptive_field():
    model = load_backbone("demo-shapes").model
    fields = receptive_fields(model)
    infos = {info.name: info for info in feature_layers(model)}
    for layer in ("block2_conv2", "block3_pool", "block4_relu2"):
        rf, (h, w, _) = fields[layer], infos[layer].shape
        for pos in [(0, 0), (h // 2, w // 2), (h - 1, w - 1), (1, w - 2)]:
            top, left, bottom, right = crop_window(pos, (h, w), (64, 64), rf)
            assert 0 <= top < bottom <= 64 and 0 <= left < right <= 64
            # the cell's field, clipped to the image; widened to 16 px only where clipping left less
            field = cell_region(rf, *pos, (64, 64))
            if min(field[2] - field[0], field[3] - field[1]) >= 16:
                assert (top, left, bottom, right) == field
            else:
                assert top <= field[0] and left <= field[1] and bottom >= field[2] and right >= field[3]
                assert min(bottom - top, right - left) == 16
            cy, cx = (rf.start[a] + pos[a] * rf.stride[a] for a in (0, 1))
            assert top <= cy < bottom and left <= cx < right  # centred on the peak cell
    centre = [crop_window((4, 4), (8, 8), (64, 64), fields[name]) for name in ("block3_pool", "block4_relu2")]
    side = [bottom - top for top, _, bottom, _ in centre]
    assert side[0] == 36 and side[1] > side[0]  # deeper: a larger field (68 px, clipped at the border)


def test_crop_window_widens_tiny_fields_and_falls_back_without_one():
    tiny = ReceptiveField((3, 3), (1, 1), (0.0, 0.0))
    assert crop_window((0, 0), (64, 64), (64, 64), tiny) == (0, 0, 16, 16)
    assert crop_window((30, 30), (64, 64), (64, 64), tiny) == (22, 22, 38, 38)  # widened around the cell
    for pos in [(0, 0), (3, 3), (1, 2)]:  # no field: three effective strides around the cell
        top, left, bottom, right = crop_window(pos, (4, 4), (64, 64))
        assert 0 <= top < bottom <= 64 and 0 <= left < right <= 64 and bottom - top == 48
    assert crop_window(None, (4, 4), (64, 48), tiny) == (0, 0, 64, 48)


@pytest.fixture(scope="module")
def shapes_features():
    ds = load_demo_set("shapes", per_class=8, size=64)
    bb = load_backbone("demo-shapes")
    blocks = [info.name for info in representative_layers(feature_layers(bb.model))]
    result = FeatureExtractor(bb, blocks, ["avg", "max"]).extract(list(ds.images))
    return blocks, result, list(ds.labels)


def test_selectivity_rises_with_depth_on_demo_shapes(shapes_features):
    blocks, result, labels = shapes_features
    sel = [channel_stats(result.features[f"{b}/max"], labels, mean_pooled=result.features[f"{b}/avg"]).mean_selectivity
           for b in blocks]
    assert sel[-1] > sel[0]


def test_cka_adjacent_blocks_exceed_first_to_last(shapes_features):
    blocks, result, _ = shapes_features
    m = cka_matrix({b: result.features[f"{b}/avg"] for b in blocks}, debiased=True).values
    adjacent = [m[i, i + 1] for i in range(len(blocks) - 1)]
    assert min(adjacent) > m[0, -1]


def test_activation_maximisation_raises_the_activation_and_can_be_cancelled():
    bb = load_backbone("demo-shapes")
    seen = []
    res = activation_maximisation(bb, "block3_pool", 2, steps=12, progress=lambda i, n, v: seen.append((i, n)))
    assert res.image.shape == (64, 64, 3) and res.image.dtype == np.uint8
    assert res.best_value > 1.2 * res.start_value and not res.cancelled and seen[-1] == (12, 12)
    again = activation_maximisation(bb, "block3_pool", 2, steps=12)
    assert np.array_equal(again.image, res.image)  # seeded: the same picture each time
    stop_after = iter([False, False, True])
    cut = activation_maximisation(bb, "block3_pool", 2, steps=12, should_stop=lambda: next(stop_after))
    assert cut.cancelled and cut.steps_done == 2
    with pytest.raises(ActivationMaxError, match="out of range"):
        activation_maximisation(bb, "block3_pool", 64)


def test_similarity_cli_writes_a_matrix_pandas_reads(tmp_path, capsys):
    export_demo_set("shapes", tmp_path / "shapes", per_class=2)
    out = tmp_path / "cka.csv"
    code = main(["similarity", "demo-shapes", str(tmp_path / "shapes"), "--other-weights", "none", "--debiased",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "debiased" in printed
    first = out.read_text().splitlines()[0]
    assert first.startswith("# estimator: linear CKA, debiased") and "random" in first.lower()
    df = pd.read_csv(out, comment="#")
    assert list(df["layer"]) == ["block1_pool", "block2_pool", "block3_pool", "block4_pool"]
    assert list(df.columns[1:]) == list(df["layer"]) and df.iloc[:, 1:].notna().all().all()

    full = tmp_path / "full.csv"
    assert main(["similarity", "demo-shapes", str(tmp_path / "shapes"), "--layers", "block3_pool,block4_pool",
                 "--features", "full", "--out", str(full)]) == 0
    dff = pd.read_csv(full, comment="#")
    assert dff.shape == (2, 3) and dff.iloc[0, 1] == pytest.approx(1.0)
    assert "full maps" in full.read_text().splitlines()[0]
    assert main(["similarity", "demo-shapes", str(tmp_path / "shapes"), "--out", str(tmp_path / "x.txt")]) == 2
