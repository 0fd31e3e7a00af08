"""English PHI rules: person names, textual dates, street addresses, hospitals and organizations.

Names are found by context (titles `Dr.`/`Mrs.`, credentials `, MD`, words such as `patient`, `seen by`,
`spoke with`, relatives), by a first-name lexicon followed by a capitalized word, and by runs of two or more
capitalized words in mid-sentence that are not known clinical terms or eponyms (`Parkinson's`, `Down
syndrome`, `Hodgkin lymphoma` stay).

    from medscribe.phi.rules_en import find_names_en
    list(find_names_en("Seen by Dr. Alan Whitfield on rounds."))
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

Span = tuple[int, int, str]

_CAP = r"(?:[A-Z]['’]|Ma?c)?[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)?"
_PARTICLE = r"(?:(?:van|von|der|den|de|del|della|da|di|du|la|le|ter|ten|bin|ibn|al)\s+){0,2}"
_CAP_OR_INITIAL = rf"(?:{_CAP}|[A-Z]\.)"
_NAME_TAIL = rf"(?:\s*{_CAP_OR_INITIAL}){{0,1}}(?:\s+{_PARTICLE}{_CAP}){{0,2}}"
TITLE_RE = re.compile(
    rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Professor|Mister|Madam|Sir|Dame|Mx|Sr|Sister|Nurse|Doctor)\.?\s+"
    rf"({_CAP_OR_INITIAL}{_NAME_TAIL})"
)
# Headers in capitals: "ATTENDING: DR. WILSON", "Discussed with Dr. PARKINSON". Mr/Ms need the period here
# ("MR ANGIOGRAPHY", "MS PLAQUES" are magnetic resonance and multiple sclerosis).
TITLE_CAPS_RE = re.compile(
    r"\b(?:(?:Dr|DR|Mrs|MRS|Prof|PROF|Doctor|DOCTOR)\.?|(?:Mr|MR|Ms|MS)\.)\s+"
    r"([A-Z](?:['’]?[A-Z]){2,}(?:-[A-Z]{2,})?(?:\s+[A-Z](?:['’]?[A-Z]){2,})?)(?![\w])"
)
# "Drs. Lee and Hartmann", "Drs Day, Banks & Pope": every name of the list is a person.
PLURAL_TITLE_RE = re.compile(rf"\bDrs\.?\s+({_CAP}(?:\s*(?:,|and|&)\s*(?:Dr\.?\s+)?{_CAP})+|{_CAP})")
CREDENTIAL_RE = re.compile(rf"\b({_CAP_OR_INITIAL}{_NAME_TAIL}),?\s+(?:MD|M\.D\.|DO|RN|NP|PA-C|PhD|MBBS|FRCR)\b")
PERSON_CONTEXT_RE = re.compile(
    r"\b(?P<context>(?i:patient(?: name)?|pt\.?|name|seen by|signed by|dictated by|reported by|reviewed by|read by|"
    r"verified by|transcribed by|attending(?: physician)?|referring(?: physician| doctor)?|referred by|"
    r"discussed with|spoke with|spoken to|informed|contacted|called|per|cc|wife|husband|son|daughter|mother|"
    r"father|sister|brother|partner|guardian|caregiver|friend|neighbor|nurse|physician|surgeon|radiologist|"
    r"technologist|resident|fellow|electronically signed by|interpreted by|ordered by|provider|PCP|"
    r"signed|signature|communicated to|called to|reviewed with|performed by|requested by|obtained by|"
    r"approved by|authorized by|attested by|conferred with|consulted with|d/w|paged|consultant|"
    # verbs whose agent is a person in a report ("Report finalized by X"); not "confirmed/assessed by", which
    # take a method ("confirmed by Doppler")
    r"finalized by|prepared by|edited by|amended by|addended by|acknowledged by|authenticated by|"
    r"countersigned by|co-?signed by|supervised by|witnessed by|released by))\s*[:,]?\s+"
    # a whole word: "called Cdc42", "called MeCP2" name a protein, and "Cdc" / "Me" are no person
    rf"(?P<name>{_CAP_OR_INITIAL}{_NAME_TAIL})(?![A-Za-z0-9])",
)
# Context words that precede ordinary clinical phrases too ("per Wells criteria", "so-called Baker's cyst",
# "informed consent"): after them an eponym stays an eponym. After every other person context (and always after
# a title or before a credential) the first name word is a person even if it is also an eponym or a common
# word ("Discussed with Dr. Wilson", "referred by Young"), unless a medical head noun follows it
# ("discussed with Parkinson's disease specialists").
WEAK_CONTEXTS = frozenset({"per", "cc", "called", "informed", "contacted", "pt", "pt.", "name", "patient"})
# Nouns after an eponym that make it a medical term: "Wilson disease", "Bell's palsy", "Baker's cyst".
MEDICAL_HEADS = frozenset(
    """disease diseases syndrome syndromes palsy sign signs test tests score scale criteria classification
    fracture fractures cyst cysts lymphoma sarcoma tumor tumour node nodes ligament phenomenon reflex maneuver
    manoeuvre procedure operation approach position view line lines law ratio index triad ulcer ulcers hernia
    tube duct canal space pouch point method technique type grade stage stain staining unit units effect variant
    anomaly malformation cell cells body bodies disorder thyroiditis encephalopathy chorea dementia contracture
    deformity lesion lesions sulcus foramen artery vein area aphasia solution angle nodule nodules spots esophagus
    diverticulum gland glands capsule membrane layer sequence classification""".split()
)
# Of those, the nouns after which any capitalized name, known eponym or not, is the name of a condition or a
# structure: "Cornelia de Lange syndrome", "Treacher Collins syndrome", "Batten disease", "Leydig cells". A person
# is practically never followed by one of them; "sign", "test", "type" and the like can follow a person.
EPONYM_HEADS = frozenset(
    """disease diseases syndrome syndromes sequence anomaly malformation disorder disorders palsy phenomenon
    cell cells membrane dystrophy myopathy neuropathy ataxia dysplasia lymphoma sarcoma tumor tumour""".split()
)
_MEDICAL_AFTER_RE = re.compile(r"(?:['’]s?)?\s+([A-Za-z]+)")
# Words a name span may not end on even in a strong context ("Dr. Smith Electronically ..." has no period).
_TAIL_STOP = frozenset({"dr", "mr", "mrs", "ms", "miss", "prof", "md"})
LAST_FIRST_RE = re.compile(
    rf"\b(?i:name|patient|pt|client|resident|re)\s*:\s*({_CAP}(?:\s+{_PARTICLE}{_CAP})?,\s+{_CAP}(?:\s+[A-Z]\.)?)"
)
# Not after a hyphen: "factor-kappa-B. Nuclear ..." ends a compound, it is no initial.
INITIAL_SURNAME_RE = re.compile(rf"(?<![\w./-])[A-Z]\.\s?(?:[A-Z]\.\s?)?{_PARTICLE}{_CAP}(?:\s+{_PARTICLE}{_CAP})?")
CAP_RUN_RE = re.compile(rf"(?<![\w'’.-])({_CAP})((?:\s+(?:[A-Z]\.\s+)?{_PARTICLE}{_CAP}){{1,2}})(?![\w])")
SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;\n]\s*|[\n•·*-]\s*|\d[.)]\s*|[\"“(]\s*)$")

# Eponyms and capitalized clinical words that are not people.
EPONYMS_EN = frozenset(
    """dr mr mrs ms miss prof md parkinson parkinson's parkinsonian hodgkin hodgkin's down crohn crohn's alzheimer
    alzheimer's cushing
    cushing's addison addison's graves graves' hashimoto hashimoto's baker baker's schmorl schmorl's bartholin
    virchow virchow's wilson wilson's conn conn's paget paget's raynaud raynaud's sjogren sjögren sjogren's barrett
    barrett's meckel meckel's kerley seldinger mantoux babinski kernig brudzinski menetrier fallopian eustachian
    douglas willis glisson lisfranc chopart achilles poupart kawasaki goodpasture wegener marfan ehlers danlos
    turner klinefelter edwards patau apgar gleason hounsfield doppler valsalva wells rankin bosniak fisher spetzler
    garden weber neer waldeyer hartmann billroth roux willebrand dupuytren stewart leriche morgagni hirschsprung
    colles smith monteggia barton bennett hill sachs gaucher tay lyme epstein barr celsius kelvin roentgen
    wassermann gram ziehl neelsen bi-rads ti-rads li-rads pi-rads lung-rads tnm who tanner murphy murphy's
    mcburney mcburney's bell bell's horner horner's guillain barré barre kaposi kaposi's ewing ewing's wilms
    burkitt burkitt's hurthle hürthle bochdalek morgagni's zenker zenker's mallory weiss boerhaave osgood
    schlatter legg calve perthes kienbock kienböck scheuermann scheuermann's salter harris segond hill-sachs
    bankart jefferson hangman chance smith's colles' galeazzi essex lopresti maisonneuve tillaux pilon jones
    lisfranc's budd chiari arnold dandy walker sturge weber's von hippel lindau recklinghausen tourette
    huntington huntington's lou gehrig gehrig's creutzfeldt jakob korsakoff wernicke broca broca's sylvian
    rolandic monro luschka magendie galen galen's""".split()
)
CAPITALIZED_NON_NAMES = frozenset(
    """the a an this that these those there his her their its on in at of for with and or but no not none
    left right bilateral anterior posterior medial lateral superior inferior upper lower mild moderate severe
    normal abnormal impression findings finding history indication technique comparison conclusion clinical
    exam examination ct mri pet us x-ray chest abdomen pelvis head neck brain spine liver kidney kidneys lung lungs
    heart aorta thyroid breast prostate uterus ovary ovaries bladder pancreas spleen gallbladder bowel colon
    emergency department intensive care unit internal medicine general surgery radiology cardiology oncology
    neurology pathology pediatrics orthopedics urology medical center hospital clinic university institute
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december today yesterday tomorrow patient patients doctor nurse report reports
    study studies sequence sequences axial coronal sagittal contrast enhanced non unremarkable stable new no
    since after before during follow up follow-up please note recommend recommended correlation clinically
    english russian american british covid sars cov influenza hiv hepatitis type diabetes mellitus""".split()
)

MONTHS_EN = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
DATE_EN_RE = re.compile(
    rf"\b(?:{MONTHS_EN}\.?\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?(?:,?\s+(?:19|20)\d\d)?"
    rf"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?{MONTHS_EN}\.?(?:,?\s+(?:19|20)\d\d)?"
    rf"|{MONTHS_EN}\.?,?\s+(?:19|20)\d\d)\b"
)
DOB_EN_RE = re.compile(r"\b(?:born in|DOB:?|date of birth:?|b\.)\s*((?:19|20)\d\d)\b", re.IGNORECASE)

_STREET_EN = (
    r"Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?|"
    r"Terrace|Ter\.?|Circle|Cir\.?|Parkway|Pkwy\.?|Highway|Hwy\.?|Square|Sq\.?|Trail|Crescent|Close"
)
_US_STATE = (
    r"A[LKZR]|C[AOT]|D[EC]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[AT]|"
    r"W[AIVY]"
)
ADDRESS_EN_RE = re.compile(
    rf"\b\d{{1,5}}\s+(?:[NSEW]\.?\s+)?(?:{_CAP}\s+){{0,3}}{_CAP}\s+(?:{_STREET_EN})(?![a-z])"
    rf"(?:,?\s*(?:Apt\.?|Apartment|Unit|Suite|Ste\.?|#)\s*\w+)?"
    rf"(?:,\s*(?:{_CAP}\s+){{0,2}}{_CAP})?(?:,?\s*(?:{_US_STATE})\b)?(?:\s+\d{{5}}(?:-\d{{4}})?)?"
    rf"|\b(?:{_CAP}\s+){{0,2}}{_CAP},\s*(?:{_US_STATE})\s+\d{{5}}(?:-\d{{4}})?\b"
    rf"|\bP\.?O\.? Box\s+\d+"
)
LIVES_IN_EN_RE = re.compile(
    rf"\b(?i:lives in|living in|resident of|resides in|from the town of|moved from|relocated from|address:?|"
    rf"is from|are from|was from|comes from|came from|originally from|native of|born in|"
    rf"lives at|home in|travel(?:ed|led)? to|returned from|visiting from)\s+(?!the\b|The\b|a\b|an\b)"
    rf"((?:{_CAP}\s+){{0,2}}{_CAP})",
)
_ORG_SUFFIX = (
    r"Hospital|Medical Center|Medical Centre|Health Center|Health Centre|Clinic|Health System|Healthcare|"
    r"Infirmary|Institute|University|Medical Group|Imaging(?: Center)?|Radiology(?: Associates| Group)?|"
    r"Health|Hospice|Sanatorium|Laboratories|Laboratory|Labs|Cancer Center|Children's|Foundation|Associates|"
    r"Pharmacy|Nursing Home|Rehabilitation Center|Rehab|Surgical Center|Surgery Center|Diagnostics|College"
)
ORG_EN_RE = re.compile(
    rf"\b(?:(?:St\.?|Saint|Mount|Mt\.?)\s+)?(?:{_CAP}(?:'s)?\s+|[A-Z]{{2,5}}\s+|&\s+|of\s+){{1,5}}(?:{_ORG_SUFFIX})\b"
    rf"(?:\s+(?:of|at|in)\s+(?:the\s+)?(?:{_CAP}\s*){{1,3}})?"
    rf"|\b(?:{_ORG_SUFFIX})\s+(?:of|at)\s+(?:the\s+)?(?:{_CAP}\s*){{1,3}}"
)
_ORG_GENERIC_START = re.compile(r"^(?:The|A|An|Our|This|Their|His|Her|Outside|Local|Private|General)\s+", re.IGNORECASE)


@lru_cache(maxsize=1)
def first_names_en() -> frozenset[str]:
    text = (Path(__file__).parent.parent / "resources" / "phi" / "first_names_en.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# Title-cased terms that are not people ("Short Bowel Syndrome", "National Institutes of Health", "Asian
# Americans"): a capitalized run without any person context is a name only if none of its words is one of these
# heads or has a suffix that English surnames practically never have.
TERM_WORDS = frozenset(
    """syndrome syndromes disease diseases disorder disorders fever virus viruses infection infections cancer
    cancers tumor tumors tumour leukemia sarcoma lymphoma carcinoma treatment prevention screening information
    center centers centre institute institutes health care professional professionals sheet sheets fact facts
    resources resource education web research program programs society association foundation services service
    states united national international republic island islands europe european asia asian africa african
    units administration control settings childhood adult adults primary type stage grade therapy test tests
    trial trials study studies clinical medical surgical guidelines network database library university college
    school department office agency federal county state city north south east west new san los las saint great
    general human rare genetic genetics home reference medicine medicines drug drugs food nutrition kidney heart
    lung liver brain skin bone blood eye ear nose throat cell cells stem germ central nervous system occult
    metastatic squamous hemorrhagic infant infants children child women men older young family families patient
    patients public global world day week month year awareness alliance council committee board journal news""".split()
)
TERM_SUFFIX_RE = re.compile(
    r"(?:itis|omas?|osis|emia|aemia|pathy|ectomy|plasty|scopy|graphy|ology|ologists?|ical|ics|ism|ous|ive|ary|"
    r"tions?|sions?|ments?|ness|ity|ance|ence|icans|ians|ese|ed|ing)$"
)


def _title_case_term(span_text: str) -> bool:
    for word in re.findall(r"[A-Za-z]+", span_text):
        low = word.lower()
        if low in TERM_WORDS or (len(low) > 4 and TERM_SUFFIX_RE.search(low)):
            return True
    return False


def _is_non_name(word: str) -> bool:
    if len(word) == 1 and word.isupper():
        return False  # an initial ("A." -> "A"), not the article
    low = word.lower()
    return low in EPONYMS_EN or low in CAPITALIZED_NON_NAMES or low.rstrip("s'’") in EPONYMS_EN


def _trim_non_names(text: str, start: int, end: int, eponym_tail: bool = False) -> tuple[int, int] | None:
    """Shrink a candidate name span so it starts and ends on a word that can be a name.

    `eponym_tail`: a last word that is an eponym stays unless its medical sense follows ("Liam Parkinson next
    week" is a person, "... Parkinson disease" is not); capitalized non-names are always trimmed."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"[A-Za-z][\w'’.-]*", text[start:end])]
    while words and _is_non_name(text[words[0][0] : words[0][1]].rstrip(".")):
        words.pop(0)
    while words and _is_non_name(last := text[words[-1][0] : words[-1][1]].rstrip(".")):
        if eponym_tail and len(words) > 1 and last.lower() not in CAPITALIZED_NON_NAMES and not _medical_after(
            text, words[-1][1]
        ):
            break
        words.pop()
    if not words:
        return None
    return words[0][0], words[-1][1]


def _at_sentence_start(text: str, start: int) -> bool:
    return start == 0 or SENTENCE_START_RE.search(text, max(0, start - 4), start) is not None


def _medical_after(text: str, end: int) -> bool:
    """An eponym ending at `end` is followed by a medical head noun: "Wilson disease", "Baker's cyst"."""
    m = _MEDICAL_AFTER_RE.match(text, end)
    return m is not None and m.group(1).lower() in MEDICAL_HEADS


def _condition_after(text: str, end: int) -> bool:
    """The span ending at `end` names a condition or structure: an EPONYM_HEADS noun follows it."""
    m = _MEDICAL_AFTER_RE.match(text, end)
    return m is not None and m.group(1).lower() in EPONYM_HEADS


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start() + start, m.end() + start) for m in re.finditer(r"[A-Za-z][\w'’.-]*", text[start:end])]


def _ordinary(word: str) -> bool:
    """A capitalized word that is never a surname even after a title: function words, "Impression", "Left"."""
    low = word.rstrip(".").lower()
    if len(low) == 1:
        return False  # an initial ("A. Whitby"), not the article
    return low in CAPITALIZED_NON_NAMES and low not in {"may", "march", "june", "august", "english", "young"}


def _strong_span(text: str, start: int, end: int, *, title: bool) -> tuple[int, int] | None:
    """The name in a strong person context: its first word is a person even when it is an eponym or a common
    word (a title always; other contexts unless a medical head noun follows the eponym); only ordinary words
    and titles are trimmed from its end."""
    words = _words(text, start, end)
    while words and not title and (
        _ordinary(text[words[0][0] : words[0][1]]) or text[words[0][0] : words[0][1]].rstrip(".").lower() in _TAIL_STOP
    ):
        words.pop(0)  # "seen by Dr. X": the title is not the name (TITLE_RE finds X)
    if not words or not text[words[0][0]].isupper():
        return None
    first = next((w for w in words if not re.fullmatch(r"[A-Z]\.?", text[w[0] : w[1]])), None)
    if first is not None and not title:
        word = text[first[0] : first[1]].rstrip(".")
        if _is_non_name(word) and _medical_after(text, first[1]):
            return None  # "discussed with Parkinson's disease specialists": the eponym in its medical sense
    while len(words) > 1:
        last = text[words[-1][0] : words[-1][1]].rstrip(".")
        if _ordinary(last) or last.lower() in _TAIL_STOP or last.lower() in MEDICAL_HEADS:
            words.pop()
        else:
            break
    return words[0][0], words[-1][1]


def _first_name_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """A capitalized run that starts with a known first name: the words after it are the surname even when
    they are eponyms or common words ("John Smith", "Mary Baker"), unless the medical sense follows
    ("... Baker's cyst") or they are ordinary words; a first name that is itself an eponym in its medical
    sense ("Addison disease") is no person."""
    words = _words(text, start, end)
    first = text[words[0][0] : words[0][1]]
    if _is_non_name(first) and _medical_after(text, words[0][1]):
        return None
    while len(words) > 1:
        w_start, w_end = words[-1]
        last = text[w_start:w_end].rstrip(".")
        if _ordinary(last) or last.lower() in MEDICAL_HEADS or (_is_non_name(last) and _medical_after(text, w_end)):
            words.pop()
        else:
            break
    if len(words) == 1 and _is_non_name(first):
        return None
    return words[0][0], words[-1][1]


def _title_matches(text: str) -> Iterator[re.Match]:
    """TITLE_RE matches where a match that swallowed the next title ("Dr. Bell Ms. White") resumes at it."""
    pos = 0
    while True:
        m = TITLE_RE.search(text, pos)
        if m is None:
            return
        yield m
        tail = re.search(r"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof|Mx|Sr|Sister|Nurse|Doctor)\b", text[m.start(1) : m.end()])
        pos = m.start(1) + tail.start() if tail else m.end()


def find_names_en(text: str) -> Iterator[Span]:
    for m in _title_matches(text):
        span = _strong_span(text, m.start(1), m.end(1), title=True)
        if span:
            yield span[0], span[1], "NAME"
    for m in TITLE_CAPS_RE.finditer(text):
        yield m.start(1), m.end(1), "NAME"
    for m in PLURAL_TITLE_RE.finditer(text):
        for w in re.finditer(_CAP, m.group(1)):
            if w.group() != "Dr":
                yield m.start(1) + w.start(), m.start(1) + w.end(), "NAME"
    for m in CREDENTIAL_RE.finditer(text):
        # The word before ", MD" is the person's surname, whatever else it names; only leading ordinary words
        # ("Impression Smith, MD" cannot be told apart, "The") are dropped.
        words = _words(text, m.start(1), m.end(1))
        while len(words) > 1 and _ordinary(text[words[0][0] : words[0][1]]):
            words.pop(0)
        if words and text[words[0][0]].isupper() and not _ordinary(text[words[-1][0] : words[-1][1]]):
            yield words[0][0], words[-1][1], "NAME"
    for m in PERSON_CONTEXT_RE.finditer(text):
        start, end = m.start("name"), m.end("name")
        if m.group("context").lower() in WEAK_CONTEXTS:
            span = _trim_non_names(text, start, end)
            if span and _condition_after(text, span[1]):
                continue  # "a condition called Batten disease", "cells called Leydig cells"
        else:
            span = _strong_span(text, start, end, title=False)
        if span and text[span[0]].isupper():
            yield span[0], span[1], "NAME"
    for m in LAST_FIRST_RE.finditer(text):
        span = _trim_non_names(text, m.start(1), m.end(1))
        if span and text[span[0]].isupper():
            yield span[0], span[1], "NAME"
    for m in INITIAL_SURNAME_RE.finditer(text):
        before = text[: m.start()].rstrip()[-1:]
        if before and (before in ":;/.°" or before.isdigit()):
            continue  # "Sex: F. Case ...", "g/L. Mass ...", "36.6 °C. Ki-67": a field or a unit, not an initial
        # An initial makes the surname a person's even when it is an eponym ("J. Smith", "A. Parkinson"),
        # unless the medical sense follows ("... Smith fracture").
        span = _trim_non_names(text, m.start(), m.end(), eponym_tail=True)
        if span and span[1] - span[0] > 3 and "." in text[m.start() : m.start() + 3]:
            yield m.start(), span[1], "NAME"
    names = first_names_en()
    for m in CAP_RUN_RE.finditer(text):
        # A known first name anywhere in the run starts a name ("Patient John Smith": the run starts at Patient).
        at = next((w for w in _words(text, m.start(), m.end()) if text[w[0] : w[1]].rstrip(".") in names), None)
        if at is not None:
            span = _first_name_span(text, at[0], m.end())
            if span and not _condition_after(text, span[1]):  # not "Cornelia de Lange syndrome"
                yield span[0], span[1], "NAME"
            continue
        if _at_sentence_start(text, m.start()):
            continue
        span = _trim_non_names(text, m.start(), m.end(), eponym_tail=True)
        if span and " " in text[span[0] : span[1]] and not _title_case_term(text[span[0] : span[1]]) and \
                not _condition_after(text, span[1]):  # not "Treacher Collins syndrome"
            yield span[0], span[1], "NAME"


def find_dates_en(text: str) -> Iterator[Span]:
    for m in DATE_EN_RE.finditer(text):
        if m.group() in ("May", "March") or re.fullmatch(r"(?:May|March)\s+\d{1,2}", m.group()):
            # "may 3" style verbs are lowercase; a bare capitalized month + small number is still a date.
            pass
        yield m.start(), m.end(), "DATE"
    for m in DOB_EN_RE.finditer(text):
        yield m.start(1), m.end(1), "DATE"


def find_addresses_en(text: str) -> Iterator[Span]:
    for m in ADDRESS_EN_RE.finditer(text):
        yield m.start(), m.end(), "ADDRESS"
    for m in LIVES_IN_EN_RE.finditer(text):
        # Place names keep their leading words ("Upper Marsh", "Port Ellis"): no name trimming here.
        yield m.start(1), m.end(1), "ADDRESS"


def find_orgs_en(text: str) -> Iterator[Span]:
    for m in ORG_EN_RE.finditer(text):
        start, end = m.start(), m.end()
        generic = _ORG_GENERIC_START.match(text, start)
        if generic:
            start = generic.end()
        span_text = text[start:end]
        if " " not in span_text.strip() and not span_text[:1].isupper():
            continue
        if re.fullmatch(rf"(?:{_ORG_SUFFIX})", span_text):
            continue
        yield start, end, "ORG"
