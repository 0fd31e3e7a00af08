"""The image column: paths checked (missing / corrupt -> rejects naming image and row), images stored under their
pixel hash without metadata (no PHI-bearing file name reaches the dataset), and the image part of the example for
dedup and splits."""

from __future__ import annotations

import json

from data_helpers import all_output_text, read_jsonl, settings_for, write_csv
from vision_kit import write_corrupt, write_png

from medscribe.data import run_data

HEADER = ["ID", "Орган", "Мод", "Описание", "Заключение", "Снимок"]
COLUMNS = {"id": "ID", "organ": "Орган", "modality": "Мод", "finding": "Описание", "conclusion": "Заключение",
           "image": "Снимок"}


def _records(out) -> dict[str, dict]:
    return {r["id"]: r for split in ("train", "eval", "test") for r in read_jsonl(out / f"{split}.jsonl")}


def test_images_checked_stored_by_hash_and_bad_ones_rejected(tmp_path):
    src_dir = tmp_path / "in"
    rows = []
    for i in range(12):
        name = f"scans/Иванов_Иван_2024-03-0{i % 9 + 1}_{i}.png"  # a PHI-bearing file name
        write_png(src_dir / name, seed=i)
        rows.append([f"r{i}", "легкие", "рентген", f"Затемнение {i} мм в нижней доле справа.",
                     f"Пневмония, очаг {i} мм.", name])
    absolute = write_png(tmp_path / "elsewhere" / "Petrov_scan.png", seed=100)
    rows.append(["abs", "легкие", "рентген", "Очаг 30 мм в верхней доле.", "Образование верхней доли.", str(absolute)])
    rows.append(["missing", "легкие", "рентген", "Очаг 31 мм в верхней доле.", "Образование.",
                 "scans/Сидоров_Петр_нет.png"])
    write_corrupt(src_dir / "scans" / "broken.png")
    rows.append(["corrupt", "легкие", "рентген", "Очаг 32 мм в верхней доле.", "Образование.", "scans/broken.png"])
    # a truncated PNG: the header reads, the pixels do not (only a full decode finds it)
    good = (src_dir / "scans" / "Иванов_Иван_2024-03-01_0.png").read_bytes()
    (src_dir / "scans" / "cut.png").write_bytes(good[: len(good) // 2])
    rows.append(["cut", "легкие", "рентген", "Очаг 33 мм в верхней доле.", "Образование.", "scans/cut.png"])
    rows.append(["noimage", "легкие", "рентген", "Очаг 34 мм без снимка.", "Образование без снимка.", ""])
    src = write_csv(src_dir / "reports.csv", HEADER, rows)
    settings = settings_for(tmp_path, inputs=[str(src)], columns=COLUMNS, test_per_group=2)
    result = run_data(settings)
    out = tmp_path / "out"

    rejects = {r["row"]: r for r in read_jsonl(out / "rejects.jsonl")}
    assert rejects[15]["reason"] == "image_not_found" and "row 15" in rejects[15]["detail"]
    assert "Сидоров" not in rejects[15]["detail"] and "[NAME]" in rejects[15]["detail"]  # the name is scrubbed
    assert rejects[16]["reason"] == "image_unreadable" and "broken.png" in rejects[16]["detail"]
    assert rejects[17]["reason"] == "image_corrupt" and "cut.png" in rejects[17]["detail"]
    assert result.counts["rows_in"] == 17 and result.counts["rows_kept"] == 14

    records = _records(out)
    assert records["noimage"]["image"] is None
    stored = {rid: r["image"] for rid, r in records.items() if r["image"]}
    assert len(stored) == 13 and len(set(stored.values())) == 13
    for ref in stored.values():
        assert ref.startswith("images/") and len(ref) == len("images/") + 32 + len(".png")
        assert (out / ref).is_file()
    from PIL import Image

    with Image.open(out / stored["abs"]) as img:  # the absolute path worked, and the pixels are the same
        with Image.open(absolute) as original:
            assert img.tobytes() == original.convert("RGB").tobytes()
    text = all_output_text(out)
    assert "Иванов" not in text and "Petrov" not in text and "2024-03-0" not in text
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(r.split("/")[1] for r in stored.values())
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["images"]["distinct_images"] == 13 and "image" in manifest["splits_audit"]["linked_by"]


def test_metadata_is_stripped_from_stored_images(tmp_path):
    from PIL import Image, PngImagePlugin

    src_dir = tmp_path / "in"
    path = write_png(src_dir / "a.png", seed=1)
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "Ivanov Ivan 1962-03-14")
    Image.open(path).save(path, pnginfo=info)
    rows = [["a", "печень", "КТ", "Очаг 12 мм в печени.", "Киста печени.", "a.png"],
            ["b", "печень", "КТ", "Очаг 14 мм в печени.", "Киста печени 14 мм.", ""]]
    run_data(settings_for(tmp_path, inputs=[str(write_csv(src_dir / "r.csv", HEADER, rows))], columns=COLUMNS,
                          test_per_group=0, eval_fraction=0))
    ref = _records(tmp_path / "out")["a"]["image"]
    assert b"Ivanov" not in (tmp_path / "out" / ref).read_bytes()
    with Image.open(tmp_path / "out" / ref) as img:
        assert "Patient" not in img.info


def test_image_is_part_of_the_example_for_dedup_and_splits(tmp_path):
    src_dir = tmp_path / "in"
    for i in range(40):
        write_png(src_dir / f"img{i}.png", seed=i)
    write_png(src_dir / "copy_of_0.png", seed=0)  # the same picture under another name
    rows = [[f"r{i}", "легкие", "КТ", f"Очаг {i} мм в легком.", f"Очаг легкого {i} мм.", f"img{i}.png"]
            for i in range(40)]
    rows += [
        # same text, another image: another example, kept
        ["same_text", "легкие", "КТ", "Очаг 1 мм в легком.", "Очаг легкого 1 мм.", "img2.png"],
        # same text and the same picture (another file name): a duplicate
        ["dup", "легкие", "КТ", "Очаг 0 мм в легком.", "Очаг легкого 0 мм.", "copy_of_0.png"],
        # same picture, another text: kept, and in the same split as r5
        ["same_image", "легкие", "КТ", "Другое описание 5 мм.", "Другое заключение.", "img5.png"],
    ]
    # more pictures described twice in other words: by chance alone they would not all share a split
    rows += [[f"again{i}", "легкие", "КТ", f"Повторное описание снимка, узел {i} см.", f"Узел {i} см.",
              f"img{i}.png"] for i in range(10, 30)]
    src = write_csv(src_dir / "r.csv", HEADER, rows)
    run_data(settings_for(tmp_path, inputs=[str(src)], columns=COLUMNS, test_per_group=10))
    out = tmp_path / "out"
    rejects = {r["row"]: r for r in read_jsonl(out / "rejects.jsonl")}
    assert [r["reason"] for r in rejects.values()] == ["duplicate"] and 43 in rejects
    records = _records(out)
    assert "same_text" in records and records["same_text"]["image"] != records["r1"]["image"]
    assert records["same_image"]["image"] == records["r5"]["image"]
    assert records["same_image"]["split"] == records["r5"]["split"]
    by_image: dict[str, set[str]] = {}
    for r in records.values():
        by_image.setdefault(r["image"], set()).add(r["split"])
    assert all(len(splits) == 1 for splits in by_image.values())
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["leakage"]["exact_image"]["count"] == 0
