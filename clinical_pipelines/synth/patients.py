"""Synthetic patients: names, birth dates, contact details and SSNs from a seeded RNG."""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

from clinical_pipelines.synth.models import Patient
from clinical_pipelines.synth.names import (
    FAMILY,
    GIVEN_FEMALE,
    GIVEN_MALE,
    PLACES,
    RESTRICTED_PLACES,
    STREET_SUFFIXES,
    STREETS,
)

#: Fixed "today" of the synthetic world; ages are relative to it, never to the wall clock.
REFERENCE_DATE = datetime.date(2026, 1, 1)
#: All clinical events (studies, admissions, notes, labs) fall in this window.
EVENT_START = datetime.date(2024, 1, 1)
EVENT_END = datetime.date(2025, 12, 31)


def random_date(rng: random.Random, start: datetime.date, end: datetime.date) -> datetime.date:
    """Return a uniformly drawn date in ``[start, end]``."""
    return start + datetime.timedelta(days=rng.randrange((end - start).days + 1))


def _unique(rng: random.Random, seen: set[str], make: Callable[[random.Random], str]) -> str:
    for _ in range(10_000):
        value = make(rng)
        if value not in seen:
            seen.add(value)
            return value
    raise RuntimeError("could not draw a unique value")


def _mrn(rng: random.Random) -> str:
    return f"MRN{rng.randrange(1_000_000, 10_000_000)}"


def _ssn(rng: random.Random) -> str:
    # Area numbers 900-999 are never issued, so these cannot be real SSNs.
    return f"9{rng.randrange(100):02d}-{rng.randrange(10, 100)}-{rng.randrange(1000, 10000)}"


def _phone(rng: random.Random) -> str:
    return f"(555) {rng.randrange(200, 1000)}-{rng.randrange(10000):04d}"


def make_patients(rng: random.Random, n: int) -> list[Patient]:
    """Draw ``n`` distinct patients; at least one is over 89 and one lives in a restricted ZIP3.

    Over-89 patients are born in 1926-1933, so they are 90 or older on every event date
    (events fall in 2024-2025); everyone else is born 1940-2004.
    """
    if n < 1:
        raise ValueError("n_patients must be >= 1")
    old_idx = rng.randrange(n)
    restricted_idx = rng.randrange(n)
    seen: set[str] = set()
    patients: list[Patient] = []
    for i in range(n):
        sex = rng.choice(("F", "M"))
        given = rng.choice(GIVEN_FEMALE if sex == "F" else GIVEN_MALE)
        family = rng.choice(FAMILY)
        if i == old_idx or rng.random() < 0.1:
            birth = random_date(rng, datetime.date(1926, 1, 1), datetime.date(1933, 12, 31))
        else:
            birth = random_date(rng, datetime.date(1940, 1, 1), datetime.date(2004, 12, 31))
        places = RESTRICTED_PLACES if i == restricted_idx else PLACES
        zip3, city, state = rng.choice(places)
        street = f"{rng.randrange(12, 9900)} {rng.choice(STREETS)} {rng.choice(STREET_SUFFIXES)}"
        local = f"{given}.{family}".lower()
        patients.append(
            Patient(
                mrn=_unique(rng, seen, _mrn),
                given=given,
                family=family,
                birth_date=birth,
                sex=sex,
                address=street,
                city=city,
                state=state,
                zip=f"{zip3}{rng.randrange(100):02d}",
                phone=_unique(rng, seen, _phone),
                email=_unique(rng, seen, lambda r, p=local: f"{p}{r.randrange(10, 100)}@example.org"),
                ssn=_unique(rng, seen, _ssn),
            )
        )
    return patients
