"""Reading training data: CSV headers and encodings, images decoded as people expect, the size
budgets, crops of non-square inputs, and the note about small images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from composer.train.data import (DataError, ImageStats, check_images, check_size, load_image, load_views, scan_csv,
                                 size_note)

from .synthetic import make_folder


@pytest.fixture
def tree(tmp_path):
    return make_folder(tmp_path / "d", {"train": 2}, classes=("cat", "dog"))


@pytest.mark.parametrize("header", ["path,label", "id,label", "file,class", "image,target", "label,path", "Image,Category"])
def test_csv_headers_choose_columns_by_name(tree, header):
    first, second = header.split(",")
    rows = [("train/cat/0.png", "cat"), ("train/dog/1.png", "dog")]
    swap = first.lower() in ("label", "class", "target", "category")
    body = "".join(f"{label},{path}\n" if swap else f"{path},{label}\n" for path, label in rows)
    csv = tree / "labels.csv"
    csv.write_text(f"{header}\n{body}")
    s = scan_csv(csv)
    assert s.classes == ["cat", "dog"] and [p.name for p in s.paths] == ["0.png", "1.png"] and s.labels == [0, 1]


def test_csv_any_two_named_columns_a_bom_and_ids_without_suffix(tree):
    csv = tree / "labels.csv"
    csv.write_bytes("\ufeffpicture,animal\r\ntrain/cat/0,cat\r\ntrain/dog/1,dog\r\n".encode("utf-8"))  # Excel's "CSV UTF-8"
    s = scan_csv(csv)
    assert [p.as_posix().split("/d/")[1] for p in s.paths] == ["train/cat/0.png", "train/dog/1.png"]
    csv.write_bytes("\ufefftrain/cat/0.png,cat\ntrain/dog/1.png,dog\n".encode("utf-8"))  # no header, a BOM
    assert len(scan_csv(csv)) == 2


def test_csv_with_unnamed_columns_is_refused_with_the_names(tree):
    csv = tree / "labels.csv"
    csv.write_text("a,b,c\ntrain/cat/0.png,cat,x\n")
    with pytest.raises(DataError, match="cannot tell which of the columns `a`, `b`, `c`"):
        scan_csv(csv)


def test_csv_numeric_labels_sort_by_value(tmp_path):
    make_folder(tmp_path, {"train": 1}, classes=[str(i) for i in range(11)])
    csv = tmp_path / "l.csv"
    csv.write_text("path,label\n" + "".join(f"train/{i}/0.png,{i}\n" for i in range(11)))
    s = scan_csv(csv)
    assert s.classes[10] == "10" and s.labels == list(range(11))


def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    a = np.full((8, 8), 40000, np.uint16)  # 40000 / 65535 of white
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode == "I;16"
    x = load_image(p, 8, 8)
    assert x.shape == (3, 8, 8) and abs(int(x[0, 0, 0]) - round(40000 / 257)) <= 1  # plain convert gives 255
    tif = tmp_path / "g16.tif"
    Image.fromarray(a).save(tif)
    assert abs(int(load_image(tif, 8, 8, channels=1)[0, 0, 0]) - 156) <= 1


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    for mode in ("RGBA", "LA", "P"):
        p = tmp_path / f"{mode}.png"
        im = rgba.convert(mode) if mode != "P" else rgba.convert("RGB").convert("P")
        if mode == "P":
            im.info["transparency"] = im.getpixel((3, 3))
            im.save(p, transparency=im.getpixel((3, 3)))
        else:
            im.save(p)
        x = load_image(p, 8, 8)
        assert x[:, 4, 4].tolist() == [255, 255, 255], mode
    assert load_image(tmp_path / "RGBA.png", 8, 8)[:, 0, 0].tolist() == [255, 0, 0]


def test_cmyk_and_exif_rotation(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, quality=100)
    r, g, b = load_image(p, 16, 16)[:, 8, 8].tolist()
    assert r > 200 and g < 60 and b < 60  # red
    # a 20x10 picture, left half red, stored with orientation 6 (rotate 90 degrees clockwise to view)
    im = Image.new("RGB", (20, 10), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    q = tmp_path / "rotated.jpg"
    im.save(q, exif=exif, quality=100)
    x = load_image(q, (20, 10), (20, 10))  # upright it is 10 wide, 20 high: red on top
    assert x.shape == (3, 20, 10)
    assert x[0, 2, 5] > 200 and x[2, 17, 5] > 200


def test_size_budgets_refuse_before_decoding(tmp_path):
    with pytest.raises(ValueError, match="a side is over the limit"):
        check_size(300_000, 1)
    with pytest.raises(ValueError, match="aspect ratio is over 100:1"):
        check_size(30_000, 1)
    with pytest.raises(ValueError, match="over the limit of 65,535"):
        check_size(70_000, 10_000)
    with pytest.raises(ValueError, match="decompression bomb"):
        check_size(10_000, 10_000)
    check_size(4000, 3000)
    strip = tmp_path / "strip.png"
    Image.new("L", (60_000, 1)).save(strip)
    from composer.train.data import Samples
    with pytest.raises(DataError, match="strip.png: unreadable image \\(too large: 60000x1 pixels: the aspect ratio"):
        check_images(Samples([strip], [0], ["a"], tmp_path), "refuse")


def test_non_square_crops_cover_the_input(tmp_path):
    p = tmp_path / "wide.png"
    Image.new("RGB", (64, 32), (10, 20, 30)).save(p)
    assert load_image(p, (32, 48), (32, 48)).shape == (3, 32, 48)
    assert load_image(p, (48, 32), (48, 32)).shape == (3, 48, 32)
    views = load_views(p, [(32, 32), (40, 40)], 32, channels=1)
    assert [v.shape for v in views] == [(1, 32, 32)] * 2
    assert torch.all(views[0] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30))


def test_small_images_get_a_note_naming_the_size_flag():
    note = size_note(ImageStats(100, 28, 28), 224)
    assert note is not None and "224x224" in note and "28x28" in note and "--size 32" in note
    assert size_note(ImageStats(100, 200, 180), 224) is None
    assert size_note(None, 224) is None


def test_a_two_column_header_with_one_known_name(tree):
    csv = tree / "labels.csv"
    csv.write_text("species,file_name\ncat,train/cat/0.png\ndog,train/dog/1.png\n")
    s = scan_csv(csv)
    assert s.classes == ["cat", "dog"] and [p.name for p in s.paths] == ["0.png", "1.png"]


def test_training_crops_depend_on_seed_epoch_and_index_only(tmp_path):
    from composer.train.data import EpochSampler, Samples, TrainDataset
    from composer.train.recipe import CropConfig
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.jpg"
        Image.effect_noise((120, 90), 60).convert("RGB").save(p)
        paths.append(p)
    samples = Samples(paths, [0, 1, 0, 1], ["a", "b"], tmp_path)
    ds = TrainDataset(samples, (32, 48), 3, CropConfig(scale=(0.1, 0.5)), 0.5, seed=7)
    a = [ds[k][0] for k in range(8)]  # epochs 0 and 1
    b = [ds[k][0] for k in reversed(range(8))][::-1]  # another order (another worker split)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].shape == (3, 32, 48) and not torch.equal(a[0], a[4])  # the same image, another epoch
    assert not torch.equal(a[0], TrainDataset(samples, (32, 48), 3, CropConfig(scale=(0.1, 0.5)), 0.5, seed=8)[0][0])
    sampler = EpochSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(3)
    assert sorted(sampler) == [12, 13, 14, 15]


def test_a_first_row_naming_a_missing_image_is_data_not_a_header(tree):
    csv = tree / "labels.csv"
    csv.write_text("train/cat/9.png,cat\ntrain/dog/1.png,dog\n")
    with pytest.raises(DataError, match=r"labels.csv:1:1: no such image `train/cat/9.png`"):
        scan_csv(csv)
