"""A known first name followed by a surname that is also an eponym or a common word: the whole name goes
("John Smith" left "Smith" behind before: Smith is an eponym, as in Smith's fracture)."""

from __future__ import annotations

import pytest

from medscribe.phi import Scrubber

LEAKS = [
    ("John Smith called about the results.", "Smith"),
    ("Patient John Smith, 54, chest pain.", "Smith"),
    ("Hello, my name is John Smith and I have a cough", "Smith"),
    ("Olivia Graves called back.", "Graves"),
    ("Follow-up with Liam Parkinson next week.", "Parkinson"),
    ("Mary Baker reports fever.", "Baker"),
    ("Звонила Мария Даун по поводу результатов.", "Даун"),
    ("Иван Паркинсон пришел на контроль.", "Паркинсон"),
]
KEPT = [
    "Parkinson disease, stable.",
    "History of Graves Disease.",
    "Addison Disease is rare.",
    "Small Baker's cyst in the left popliteal fossa.",
    "Синдром Дауна исключен.",
    "Болезнь Паркинсона, течение стабильное.",
]


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.mark.parametrize(("text", "surname"), LEAKS)
def test_the_surname_after_a_first_name_is_scrubbed(scrubber, text, surname):
    out = scrubber.scrub_texts([text])[0]
    assert surname not in out and "[NAME]" in out, out


@pytest.mark.parametrize("text", KEPT)
def test_the_eponym_in_its_medical_sense_stays(scrubber, text):
    assert scrubber.scrub_texts([text])[0] == text
