"""Word lists of the labeled PHI evaluation corpus (used only by `medscribe.phi.corpus`, never by detectors).

Held out on purpose: none of these surnames, streets, cities or organizations appears in any detector rule or
lexicon, and the English first names here are disjoint from the detector's `first_names_en.txt` (a test
checks both), so the benchmark measures generalization, not lookup.
"""

from __future__ import annotations

# Russian surnames as (masculine nominative); feminine and case forms are built by corpus.inflect_surname.
SURNAMES_RU = (
    "Белокуров", "Задорожный", "Кривошеин", "Самохвалов", "Горбунков", "Прохорчук", "Лещенко", "Дымарский",
    "Чеботарёв", "Шамраев", "Веденеев", "Колокольцев", "Кашеваров", "Мухортов", "Скоробогатов", "Тетерин",
    "Ухтомский", "Филатьев", "Цыплаков", "Шелепин", "Ярошевич", "Бабурин", "Вахрамеев", "Гладилин", "Дегтярёв",
    "Жеребцов", "Зотиков", "Илюшин", "Кондрашов", "Лобанов", "Мартыненко", "Нестеренко", "Овчинников", "Пугачёв",
    "Ракитин", "Сухарев", "Трофимчук", "Хабибуллин", "Чупров", "Шишкарёв", "Щербинин", "Юдашкин", "Агафонов",
    "Бражников", "Воротынский", "Голованов", "Дружинин", "Ермолаев", "Загребельный", "Иволгин", "Квашнин",
    # invented, so that the dictionary has never seen them (tests pymorphy's guesser and the context rules)
    "Зарубайлов", "Чернопятов", "Курдюмцев", "Пыжиков", "Тряпицын", "Глухарёвский", "Мерзляков", "Ковыльченко",
    "Брындин", "Шмаровский", "Кулебякин", "Пустоваров", "Рябошапко", "Сыроежкин", "Таракановский", "Хрусталёв",
)
FIRST_NAMES_RU = (
    ("Аркадий", "m"), ("Всеволод", "m"), ("Геннадий", "m"), ("Емельян", "m"), ("Захар", "m"), ("Игнат", "m"),
    ("Лаврентий", "m"), ("Мирон", "m"), ("Платон", "m"), ("Родион", "m"), ("Савелий", "m"), ("Тимофей", "m"),
    ("Ярослав", "m"), ("Эдуард", "m"), ("Филипп", "m"), ("Агния", "f"), ("Варвара", "f"), ("Евдокия", "f"),
    ("Злата", "f"), ("Инна", "f"), ("Капитолина", "f"), ("Лидия", "f"), ("Милана", "f"), ("Нелли", "f"),
    ("Полина", "f"), ("Римма", "f"), ("Снежана", "f"), ("Таисия", "f"), ("Ульяна", "f"), ("Фаина", "f"),
)
PATRONYMIC_BASES_RU = (
    "Аркадьевич", "Всеволодович", "Геннадьевич", "Захарович", "Игнатович", "Миронович", "Платонович", "Родионович",
    "Тимофеевич", "Ярославович", "Эдуардович", "Филиппович", "Валерьевич", "Глебович", "Русланович",
)
CITIES_RU = (
    ("Кинешма", "Кинешме"), ("Сызрань", "Сызрани"), ("Новокуйбышевск", "Новокуйбышевске"), ("Жигулёвск", "Жигулёвске"),
    ("Бузулук", "Бузулуке"), ("Отрадный", "Отрадном"), ("Чапаевск", "Чапаевске"), ("Похвистнево", "Похвистнево"),
    ("Нефтегорск", "Нефтегорске"), ("Кстово", "Кстово"), ("Мелеуз", "Мелеузе"), ("Белорецк", "Белорецке"),
)
STREETS_RU = (
    "Черемуховая", "Камышинская", "Подгорная", "Ясеневая", "Тополиная", "Краснодонская", "Ольховая", "Верхнепрудная",
    "Соколиная", "Кирпичная", "Малахитовая", "Звенигородская", "Брусничная", "Рябиновая", "Нагорная",
)
STREET_TYPES_RU = ("ул.", "улица", "пр-т", "пер.", "бульвар", "проезд", "ш.")
ORG_WORDS_RU = ("Здравица", "Медиус", "Вита Плюс", "Парацельс", "Асклепий", "Гиппократ-Мед", "Медлайн", "Сантэ")
REGION_ADJ_RU = ("Самарская", "Ульяновская", "Пензенская", "Кировская", "Тверская", "Курганская", "Брянская")

FIRST_NAMES_EN = (
    "Ansel", "Bartholomew", "Cormac", "Dashiell", "Evander", "Fitzgerald", "Gideon", "Horatio", "Ignatius", "Jasper",
    "Lysander", "Mortimer", "Octavius", "Percival", "Rafferty", "Silas", "Thaddeus", "Ulysses", "Winslow", "Zebulon",
    "Adelaide", "Beatrix", "Cordelia", "Delphine", "Eloise", "Florence", "Genevieve", "Henrietta", "Imogen",
    "Josephine", "Lavinia", "Marguerite", "Octavia", "Philippa", "Rosalind", "Seraphina", "Temperance", "Wilhelmina",
)
SURNAMES_EN = (
    "Abernathy", "Blackwood", "Castellano", "Delacroix", "Eastwick", "Fairweather", "Goldsworthy", "Hollingsworth",
    "Ivanhoe", "Jablonski", "Kowalczyk", "Lockhart", "McAllister", "Nakamura", "Okonkwo", "Pemberton", "Quimby",
    "Rutherford", "Schwarzkopf", "Thistlewood", "Underhill", "Vasquez", "Whitlock", "Yamamoto", "Zielinski",
    "O'Sullivan", "Van der Berg", "Featherstone", "Greenhalgh", "Honeycutt", "Ashworth", "Birchfield", "Crowther",
    "Dunleavy", "Esterhazy", "Fennimore", "Gallagher", "Haverford", "Inglewood", "Kettering",
)
STREETS_EN = (
    "Larkspur", "Heatherbrook", "Copperfield", "Whispering Pines", "Old Mill", "Foxglove", "Sandpiper", "Kingfisher",
    "Briarwood", "Ravenscroft", "Tamarack", "Meadowlark", "Stonebridge", "Wintergreen", "Harborview",
)
STREET_TYPES_EN = ("Street", "St.", "Avenue", "Ave", "Road", "Rd.", "Lane", "Drive", "Boulevard", "Court", "Way")
CITIES_EN = (
    "Millbrook", "Ashbury", "Greenhollow", "Port Fenwick", "Oakridge", "Cedar Falls", "Brambleton", "Westhaven",
    "Lower Kettering", "Northbridge", "Fallowmere", "Stillwater",
)
STATES_EN = ("OH", "IL", "PA", "NY", "CA", "TX", "MI", "WA", "GA", "NC")
ORG_NAMES_EN = (
    "Saint Brendan's Hospital", "Riverside Medical Center", "Lakeshore Imaging Center", "Millbrook Community Hospital",
    "Northgate Radiology Associates", "Fairhaven Clinic", "St. Agatha Medical Center", "Westbury General Hospital",
    "Pinecrest Cancer Center", "Valley Oaks Health System", "Hollister Diagnostics", "Greenfield University Hospital",
    "Mercy Ridge Infirmary", "Harbor Point Surgical Center", "Bellwood Children's Hospital",
)
