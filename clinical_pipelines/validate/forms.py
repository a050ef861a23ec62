"""Closed value forms of table columns: codes, units, numbers. A cell outside its form is not released as is.

Each form is a standard's syntax or table, not a list of expected values:

``loinc``
    A LOINC code: up to 7 digits, a hyphen and the mod-10 (Luhn) check digit LOINC defines.
``ucum``
    A unit in UCUM case-sensitive syntax (The Unified Code for Units of Measure, Regenstrief):
    terms of prefixed metric atoms, non-metric atoms, integer factors and exponents joined by ``.``
    and ``/``, with parentheses. The atoms are the c/s codes of UCUM's base, SI, customary and
    clinical unit tables. UCUM annotations (``{...}``) are free text: only short lower-case ones
    (``{cells}``, ``{1.73_m2}``) are accepted, so a capitalised word cannot ride in one.
``number``
    A finite decimal number.
``token``
    A lower-case snake_case code (``discharged_home``): no capitals, no spaces.
``sex``
    HL7 v2 Table 0001 administrative sex codes (A, F, M, N, O, U) or FHIR AdministrativeGender
    (male, female, other, unknown), case-insensitive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable


def _atoms(codes: str) -> frozenset[str]:
    return frozenset(codes.split())


_BINARY_PREFIXES = ("Ki", "Mi", "Gi", "Ti")  # UCUM's binary prefixes, for information units only
_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p",
             "f", "a", "z", "y")  # fmt: skip
# Metric atoms (take a prefix): base units, SI units, and the metric units of UCUM's other tables.
_METRIC = _atoms(
    "m s g rad K C cd mol sr Hz N Pa J W A V F Ohm S Wb Cel T H lm lx Bq Gy Sv l L ar t bar u eV pc gf Ky Gal dyn erg "
    "P St Mx G Oe Gb sb Lmb ph Ci R RAD REM cal cal_th cal_IT cal_m eq osm kat U [iU] [IU] B Np bit By Bd mho "
    "m[Hg] m[H2O] [c] [h] [k] [e] [G] [g] [ly] [car_m] [m_e] [m_p] [eps_0] [mu_0]"
)
# Non-metric atoms: customary, clinical and arbitrary units (bracketed codes are UCUM's own spelling).
_NON_METRIC = _atoms(
    "10* 10^ [pi] % [ppth] [ppm] [ppb] [pptr] gon deg ' '' min h d a a_t a_j a_g wk mo mo_s mo_j mo_g "
    "[in_i] [ft_i] [yd_i] [mi_i] [nmi_i] [lb_av] [oz_av] [gr] [dr_av] [ston_av] [degF] [degR] [pH] [HPF] [LPF] "
    "[drp] [arb'U] [CFU] [PFU] [FFU] [BAU] [AU] [APL'U] [GPL'U] [MPL'U] [beth'U] [todd'U] [dye'U] [smgy'U] [knk'U] "
    "[mclg'U] [hnsf'U] [tb'U] [ka'U] [D'ag'U] [USP'U] [IR] [Lf] [MET] [S] [Ch] [diop] [p'diop] [mesh_i] [psi] atm "
    "[in_i'Hg] [in_i'H2O] [gal_us] [qt_us] [pt_us] [foz_us] [tsp_us] [tbs_us] [cup_us] [sft_i] [cft_i] [cin_i] "
    "[Btu] [Cal] [hp] [car_Au] [kn_i] [EID_50] [TCID_50] [CCID_50] [PNU] [ELU] [EU] [tbs_m] [tsp_m] [cup_m] "
    "[foz_m] [pca]"
)
_EXPONENT = re.compile(r"(.*?[^0-9+\-])([+-]?\d+)")
_ANNOTATION = re.compile(r"\{[a-z0-9_.%'\-]{0,16}\}")
_FACTOR = re.compile(r"\d+")
MAX_UNIT_LENGTH = 64


def _simple_unit(text: str) -> bool:
    if text in _METRIC or text in _NON_METRIC:
        return True
    if text[:2] in _BINARY_PREFIXES:
        return text[2:] in ("bit", "By")
    return any(text.startswith(p) and text[len(p) :] in _METRIC for p in _PREFIXES if len(text) > len(p))


def _annotatable(text: str) -> bool:
    if _simple_unit(text):
        return True
    match = _EXPONENT.fullmatch(text)
    return match is not None and _simple_unit(match.group(1))


def _component(text: str) -> bool:
    annotation = ""
    if text.endswith("}"):
        start = text.rfind("{")
        if start < 0:
            return False
        text, annotation = text[:start], text[start:]
        if not _ANNOTATION.fullmatch(annotation):
            return False
        if not text:
            return True  # an annotation alone stands for the unity
    if text.startswith("(") and text.endswith(")"):
        return _term(text[1:-1])
    return bool(_FACTOR.fullmatch(text)) or _annotatable(text)


def _split(term: str) -> list[str] | None:
    """Components of ``term`` split at top-level ``.`` and ``/`` (operators kept out); None if unbalanced."""
    parts, current = [], ""
    closing = {"(": ")", "[": "]", "{": "}"}
    stack: list[str] = []
    for char in term:
        if char in closing:
            stack.append(closing[char])
        elif stack and char == stack[-1]:
            stack.pop()
        elif char in ")]}":
            return None
        if not stack and char in "./":
            parts.append(current)
            current = ""
            continue
        current += char
    if stack:
        return None
    parts.append(current)
    return parts


def _term(term: str) -> bool:
    if term.startswith("/"):
        term = term[1:]
    parts = _split(term)
    return bool(parts) and all(p and _component(p) for p in parts)  # type: ignore[union-attr]


def is_ucum(value: str) -> bool:
    """Whether ``value`` is a unit in UCUM case-sensitive syntax (see the module docstring)."""
    return 0 < len(value) <= MAX_UNIT_LENGTH and " " not in value and _term(value)


def is_loinc(value: str) -> bool:
    """Whether ``value`` is a LOINC code whose check digit is right."""
    match = re.fullmatch(r"(\d{1,7})-(\d)", value)
    if match is None:
        return False
    total = 0
    for position, char in enumerate(reversed(match.group(1))):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(match.group(2))


def is_number(value: str) -> bool:
    """Whether ``value`` is a finite decimal number."""
    try:
        return math.isfinite(float(value)) and not value.strip().lower().startswith(("inf", "nan", "+inf", "-inf"))
    except ValueError:
        return False


_TOKEN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_SEX = frozenset({"a", "f", "m", "n", "o", "u", "male", "female", "other", "unknown"})

FORMS: dict[str, Callable[[str], bool]] = {
    "loinc": is_loinc,
    "ucum": is_ucum,
    "number": is_number,
    "token": lambda value: len(value) <= 64 and bool(_TOKEN.fullmatch(value)),
    "sex": lambda value: value.strip().lower() in _SEX,
}


def conforms(form: str, value: str) -> bool:
    """Whether the text ``value`` has the closed ``form``; an unknown form fails closed."""
    check = FORMS.get(form)
    return check is not None and check(value.strip())
