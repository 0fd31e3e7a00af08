"""Medical text is not over-scrubbed, and an initial still makes a person: found on MedQuAD's genetics pairs,
where "Cornelia de Lange syndrome", "called Cdc42" and "Leydig cells" came out as [NAME] (the name rules took
a capitalized word before a condition noun, or the letters of a gene symbol, for a person), while "by J. Smith"
was left alone (Smith is also an eponym)."""

from __future__ import annotations

import pytest

from medscribe.phi import Scrubber

KEPT = [
    "Treatment of Cornelia de Lange syndrome is supportive.",
    "Typical features of Treacher Collins syndrome include small cheekbones.",
    "Children with Koolen-de Vries syndrome have weak muscle tone.",
    "A form of Alexander Disease appears in adulthood.",
    "These are collectively called Batten disease.",
    "The testes contain cells called Leydig cells.",
    "The FGD1 protein activates another protein called Cdc42, which transmits signals.",
    "Mutations in a gene that makes a protein called MeCP2 cause the disorder.",
    "It encodes a sodium channel called NaV1.7. Sodium channels move ions.",
    "It regulates nuclear factor-kappa-B. Nuclear factor-kappa-B is a group of proteins.",
]
LEAKS = [
    ("Report by J. Smith.", "Smith"),
    ("Seen with A. Parkinson on Monday.", "Parkinson"),
    ("Contacted Anna Lee Brown about the scan.", "Brown"),
    ("Discussed with Dr. Treacher Collins.", "Collins"),  # a title makes a person whatever follows
    ("I called Mary Collins yesterday.", "Collins"),
    ("Seen by Dr. Alan Whitfield, MD.", "Whitfield"),
]


@pytest.fixture(scope="module")
def scrubber() -> Scrubber:
    return Scrubber()


@pytest.mark.parametrize("text", KEPT)
def test_condition_names_and_gene_symbols_stay(scrubber, text):
    assert scrubber.scrub_texts([text])[0] == text


@pytest.mark.parametrize(("text", "surname"), LEAKS)
def test_people_still_go(scrubber, text, surname):
    out = scrubber.scrub_texts([text])[0]
    assert surname not in out and "[NAME]" in out, out
