"""A synthetic chest X-ray / CT export at real size, shaped like the one issue 14 was found on.

    from synthetic_reports import write_export
    write_export(Path("cxr.csv"), rows=3300, seed=0)

Columns id, organ, modality, finding, conclusion, indication (English, comma-separated). What makes it real:
- stock conclusions: ~40 % of rows end in one of a few normal conclusions ("No acute cardiopulmonary
  abnormality."), the case issue 15 says a split must still test;
- findings repeat: ~6 % are exact repeats of an earlier finding (another study, the same words);
- ~1 row in 10 carries invented PHI (a name after a title, a phone, a date, an MRN) inside the finding;
- a few broken rows (an empty conclusion, a one-character finding) that `data` must reject, not crash on.
Deterministic for a seed; used by tests/test_real_size.py and bench/scale_bench.py.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

STOCK = [
    "No acute cardiopulmonary abnormality.",
    "No acute cardiopulmonary process.",
    "Normal chest radiograph.",
    "Stable chest, no acute findings.",
]
LESIONS = [
    ("right lower lobe", "consolidation", "Right lower lobe pneumonia."),
    ("left lower lobe", "consolidation", "Left lower lobe pneumonia."),
    ("right upper lobe", "nodule", "Right upper lobe nodule; CT follow-up recommended."),
    ("left upper lobe", "nodule", "Left upper lobe nodule; CT follow-up recommended."),
    ("both bases", "pleural effusion", "Bilateral pleural effusions."),
    ("right costophrenic angle", "pleural effusion", "Small right pleural effusion."),
    ("left costophrenic angle", "pleural effusion", "Small left pleural effusion."),
    ("right apex", "pneumothorax", "Right apical pneumothorax."),
    ("left apex", "pneumothorax", "Left apical pneumothorax."),
    ("cardiac silhouette", "enlargement", "Cardiomegaly without edema."),
    ("perihilar regions", "interstitial opacities", "Mild interstitial pulmonary edema."),
    ("mediastinum", "widening", "Widened mediastinum; CT angiography recommended."),
]
NORMAL_FINDINGS = [
    "The lungs are clear. The cardiomediastinal silhouette is within normal limits. No pleural effusion or "
    "pneumothorax.",
    "Lungs are well expanded and clear. Heart size is normal. No effusion. Osseous structures are intact.",
    "No focal consolidation, effusion or pneumothorax. Normal heart size. Mediastinal contours are normal.",
    "Clear lungs bilaterally. No acute osseous abnormality. The heart is not enlarged.",
]
SIZES = ["small", "moderate", "large", "subtle", "patchy", "dense", "ill-defined", "well-circumscribed"]
QUALIFIERS = ["compared with the prior study", "new since the prior examination", "unchanged from before",
              "partly obscured by overlying soft tissue", "with air bronchograms", "without volume loss"]
INDICATIONS = ["cough", "fever", "shortness of breath", "chest pain", "pre-operative", "follow-up", "trauma"]
# Invented people: no detector rule or list names them.
SURNAMES = ["Hallworth", "Quenby", "Marchetti", "Oduya", "Brannigan", "Velasquez", "Thorsby", "Kowalczyk"]
FIRST = ["Alice", "Brian", "Chloe", "Daniel", "Emma", "Farid", "Grace", "Henry"]


def _phi(rng: random.Random) -> str:
    name = f"{rng.choice(FIRST)} {rng.choice(SURNAMES)}"
    kind = rng.randrange(4)
    if kind == 0:
        area, exchange, line = rng.randrange(200, 999), rng.randrange(200, 999), rng.randrange(1000, 9999)
        return f"Patient {name}, phone ({area}) {exchange}-{line}. "
    if kind == 1:
        return f"DOB {rng.randrange(1, 13):02d}/{rng.randrange(1, 28):02d}/{rng.randrange(1940, 2005)}. "
    if kind == 2:
        return f"MRN {rng.randrange(10**6, 10**7)}. "
    return f"Discussed with Dr. {rng.choice(SURNAMES)} by phone. "


def make_row(i: int, rng: random.Random, previous: list[str]) -> list[str]:
    modality = "CT" if rng.random() < 0.15 else "XR"
    organ = "chest"
    if previous and rng.random() < 0.06:  # the same finding again (another study): must stay in one split
        finding = rng.choice(previous)
        conclusion = STOCK[0] if finding in NORMAL_FINDINGS else rng.choice(LESIONS)[2]
    elif rng.random() < 0.4:
        finding = rng.choice(NORMAL_FINDINGS)
        if rng.random() < 0.7:  # normal studies differ in their details
            finding += f" {rng.choice(QUALIFIERS).capitalize()}; study {i % 97} of the series."
        conclusion = rng.choice(STOCK)
    else:
        place, lesion, conclusion = rng.choice(LESIONS)
        size = rng.choice(SIZES)
        finding = (f"There is a {size} {lesion} in the {place}, {rng.randrange(5, 60)} mm, {rng.choice(QUALIFIERS)}. "
                   f"{rng.choice(NORMAL_FINDINGS).split('. ')[1]}.")
    if rng.random() < 0.1:
        finding = _phi(rng) + finding
    if rng.random() < 0.003:
        conclusion = ""  # broken export row: a reject
    if rng.random() < 0.002:
        finding = "x"
    previous.append(finding)
    if len(previous) > 200:
        previous.pop(0)
    return [f"cxr-{i:06d}", organ, modality, finding, conclusion, rng.choice(INDICATIONS)]


def write_export(path: Path, rows: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    previous: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "organ", "modality", "finding", "conclusion", "indication"])
        for i in range(rows):
            writer.writerow(make_row(i, rng, previous))
    return path


COLUMNS = {"id": "id", "organ": "organ", "modality": "modality", "finding": "finding", "conclusion": "conclusion"}
