"""Small, self-contained vocabularies for synthetic people, streets, places and sites.

Every family name has at least five letters and is not an English word, so a planted
surname is meaningful when searched for in bytes.
"""

from __future__ import annotations

GIVEN_FEMALE = (
    "Adaeze", "Beatrix", "Camila", "Dorothea", "Evangeline", "Fernanda", "Genevieve",
    "Harriet", "Ingrid", "Josephine", "Katarina", "Lucinda", "Marisol", "Nadezhda",
    "Ottilie", "Priyanka", "Rosalind", "Svetlana", "Theodora", "Ursula", "Valentina",
    "Wilhelmina", "Ximena", "Yolanda", "Zuzanna", "Anneliese",
)  # fmt: skip

GIVEN_MALE = (
    "Ambrose", "Bartholomew", "Cornelius", "Desmond", "Emeka", "Fitzwilliam", "Gideon",
    "Horatio", "Ignatius", "Jovan", "Kwabena", "Leopold", "Mortimer", "Nikolai", "Oswald",
    "Percival", "Quentin", "Reginald", "Sebastiano", "Thaddeus", "Ulysses", "Vikram",
    "Wendell", "Xavier", "Yusuf", "Zebulon",
)  # fmt: skip

FAMILY = (
    "Abernathy", "Adeyemi", "Albrecht", "Alvarado", "Bachmann", "Balogun", "Brannigan",
    "Castellano", "Castaneda", "Chaudhry", "Delacroix", "Desrosiers", "Dombrowski",
    "Eriksen", "Fairbanks", "Ferraro", "Galloway", "Halvorsen", "Hashimoto", "Hollister",
    "Iwasaki", "Jablonski", "Kaczmarek", "Kerrigan", "Kowalczyk", "Lindqvist", "Lombardi",
    "Marchetti", "Nakamura", "Nwachukwu", "Okonkwo", "Oyelaran", "Pellegrino", "Quintero",
    "Rasmussen", "Rutherford", "Santangelo", "Schiavone", "Takahashi", "Thornbury",
    "Valdivia", "Vanderberg", "Whitcombe", "Yamamoto", "Zamorano", "Zielinski",
)  # fmt: skip

STREETS = (
    "Juniper Hollow", "Maplewood", "Birchwood", "Quarry Hill", "Larkspur", "Copperfield",
    "Willow Bend", "Harrowgate", "Stonegate", "Sycamore Ridge", "Pemberton", "Foxglove",
    "Alder Creek", "Chestnut Grove", "Kingfisher", "Meadowlark", "Ironwood", "Brambleton",
)  # fmt: skip

STREET_SUFFIXES = ("Street", "Road", "Avenue", "Lane", "Drive", "Court", "Way", "Terrace")

# (ZIP3, city, state) for ordinary ZIP codes.
PLACES = (
    ("021", "Boston", "MA"), ("100", "New York", "NY"), ("606", "Chicago", "IL"),
    ("941", "San Francisco", "CA"), ("981", "Seattle", "WA"), ("303", "Atlanta", "GA"),
    ("770", "Houston", "TX"), ("852", "Phoenix", "AZ"), ("191", "Philadelphia", "PA"),
    ("432", "Columbus", "OH"), ("372", "Nashville", "TN"), ("802", "Denver", "CO"),
    ("554", "Minneapolis", "MN"), ("482", "Detroit", "MI"), ("972", "Portland", "OR"),
    ("331", "Miami", "FL"), ("282", "Charlotte", "NC"), ("641", "Kansas City", "MO"),
)  # fmt: skip

# (ZIP3, city, state) for ZIP3 prefixes HIPAA Safe Harbor restricts (population < 20,000).
RESTRICTED_PLACES = (
    ("036", "Claremont", "NH"), ("059", "Island Pond", "VT"), ("692", "Valentine", "NE"),
    ("790", "Amarillo", "TX"), ("823", "Rawlins", "WY"), ("830", "Jackson", "WY"),
    ("831", "Pinedale", "WY"), ("878", "Socorro", "NM"), ("884", "Tucumcari", "NM"),
    ("893", "Ely", "NV"), ("556", "Grand Marais", "MN"),
)  # fmt: skip

RESTRICTED_ZIP3 = frozenset(
    ("036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831",
     "878", "879", "884", "890", "893")
)  # fmt: skip

INSTITUTIONS = (
    "St. Aldric Memorial Hospital", "Harborview Ridge Medical Center",
    "Northgate Valley General Hospital", "Cedar Hollow Regional Medical Center",
    "Lakemont University Hospital", "Brightwater Community Hospital",
    "Marisfield County Medical Center", "Oakhaven Teaching Hospital",
)  # fmt: skip
