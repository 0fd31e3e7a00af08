"""Throughput of the whole `data` stage on a 200k-row synthetic Russian radiology export with some PHI.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/data_bench.py [--rows 200000] [--target 20000]

Builds the export (UTF-8, `;`, columns ID;Орган;Модальность;Описание;Заключение; ~1 row in 8 carries an
invented name, phone, date of birth or policy number), runs `run_data` with PHI scrubbing on, and prints
rows/s for the whole stage, the time spent inside `medscribe.phi` (the PHI engineer's scrubber) apart from
the rest, and the split sizes. The last line is the key figure; exit 1 when it misses the target.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

ORGANS = {
    "печень": ("УЗИ", ["киста", "гемангиома", "очаговое образование", "кальцинат"]),
    "почки": ("УЗИ", ["киста", "конкремент", "ангиомиолипома", "расширение ЧЛС"]),
    "гм": ("МРТ", ["очаг глиоза", "киста", "менингиома", "лакунарный инфаркт"]),
    "легкие": ("КТ", ["солидный очаг", "участок матового стекла", "буллы", "инфильтрация"]),
    "щж": ("УЗИ", ["узел", "киста", "кальцинат"]),
    "позвоночник": ("МРТ", ["грыжа диска", "протрузия диска", "гемангиома тела позвонка"]),
    "молочная железа": ("Маммография", ["фиброаденома", "киста", "кальцинаты"]),
}
PLACES = ["в верхней части", "в нижней части", "в средней части", "в области ворот", "субкапсулярно",
          "в центральных отделах", "по передней поверхности", "по задней поверхности"]
SIDES = ["правой", "левой"]
CONTOURS = ["с четкими ровными контурами", "с нечеткими контурами", "с неровными контурами", "с дольчатыми контурами"]
SURNAMES = ["Иванов", "Петров", "Сидоров", "Кузнецов", "Смирнов", "Попов", "Волков", "Соколов"]
FIRST = ["Андрей", "Сергей", "Игорь", "Олег", "Павел", "Дмитрий"]
NORMAL = "Патологических изменений не выявлено."


def phi_prefix(rng: random.Random) -> str:
    kind = rng.randrange(4)
    name = f"{rng.choice(SURNAMES)} {rng.choice(FIRST)[0]}.{rng.choice(FIRST)[0]}."
    if kind == 0:
        digits = [rng.randrange(10, 99), rng.randrange(100, 999), rng.randrange(10, 99), rng.randrange(10, 99)]
        phone = "+7 (9{}) {}-{}-{}".format(*digits)
        return f"Пациент {name}, тел. {phone}. "
    if kind == 1:
        born = f"{rng.randrange(1, 28):02d}.{rng.randrange(1, 12):02d}.{rng.randrange(1940, 2005)}"
        return f"Пациент {name}, дата рождения {born}. "
    if kind == 2:
        return f"Полис ОМС {rng.randrange(10**15, 10**16)}. "
    return f"ФИО: {name} "


def make_row(i: int, rng: random.Random) -> list[str]:
    organ = rng.choice(list(ORGANS))
    modality, lesions = ORGANS[organ]
    if rng.random() < 0.05:
        finding = (f"Размеры {rng.randrange(80, 180)}x{rng.randrange(40, 90)} мм, структура однородная, "
                   f"очаговых изменений нет.")
        conclusion = NORMAL
    else:
        lesion = rng.choice(lesions)
        a, b = rng.randrange(2, 60), rng.randrange(2, 40)
        side, place, contour = rng.choice(SIDES), rng.choice(PLACES), rng.choice(CONTOURS)
        finding = (f"{place.capitalize()} {side} доли определяется {lesion} размером {a}x{b} мм {contour}, "
                   f"плотность {rng.randrange(-20, 80)} HU, объем {rng.randrange(1, 5000) / 10} см3.")
        conclusion = f"{lesion.capitalize()} {side} доли ({organ}), {a}x{b} мм. Рекомендовано наблюдение."
    if rng.random() < 0.125:
        finding = phi_prefix(rng) + finding
    return [f"b-{i}", organ, modality, finding, conclusion]


def build_export(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";")
        writer.writerow(["ID", "Орган", "Модальность", "Описание", "Заключение"])
        previous = None
        for i in range(rows):
            row = make_row(i, rng)
            if previous and rng.random() < 0.02:
                row = [f"b-{i}", *previous[1:]]  # duplicate content under a new id: must be rejected
            writer.writerow(row)
            previous = row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--target", type=float, default=20_000, help="rows/s the whole stage must reach")
    args = parser.parse_args()

    from rich.console import Console

    from medscribe.data import run_data
    from medscribe.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="medscribe-data-bench-") as tmp:
        tmp_path = Path(tmp)
        export = tmp_path / "export.csv"
        started = time.perf_counter()
        build_export(export, args.rows)
        print(f"built {args.rows} rows ({export.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
        settings = load_settings(None, flags={
            "paths": {"data": str(tmp_path / "out")},
            "data": {
                "task": "report", "inputs": [str(export)], "group_by": "organ", "test_per_group": 200,
                "columns": {"id": "ID", "organ": "Орган", "modality": "Модальность", "finding": "Описание",
                            "conclusion": "Заключение"},
                "value_maps": {"organ": {"гм": "головной мозг", "щж": "щитовидная железа"}},
                "phi": {"enabled": True},
            },
        })
        result = run_data(settings, console=Console(stderr=True, quiet=True))

    total = result.seconds
    phi = result.phi_seconds
    rate = result.counts["rows_in"] / total
    print(f"rows in {result.counts['rows_in']}, kept {result.counts['rows_kept']}, "
          f"rejected {result.counts['rows_rejected']} {result.steps}")
    print(f"splits {result.splits}")
    print(f"PHI report: {result.manifest['phi'].get('by_type')}")
    print(f"stage total {total:.2f} s; inside medscribe.phi (PHI engineer's scrubber) {phi:.2f} s; "
          f"data stage without PHI {total - phi:.2f} s = "
          f"{result.counts['rows_in'] / max(total - phi, 1e-9):,.0f} rows/s")
    print(f"timings: {result.manifest['timings']}")
    ok = rate >= args.target
    print(f"data stage throughput: {rate:,.0f} rows/s with PHI scrubbing (target {args.target:,.0f}) "
          f"{'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
