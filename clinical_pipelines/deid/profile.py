"""The PS3.15 Annex E Basic Application Level Confidentiality Profile, with its options, as data.

The attribute table (``data/ps3_15_table_e1_1.json``) is the standard's Table E.1-1 (edition and
source recorded in the file). :func:`compile_profile` turns it and a set of options into one
action per tag, which the DICOM engine applies.

Actions (PS3.15 E.1.1): ``D`` replace with a dummy value, ``Z`` zero-length (or dummy), ``X``
remove, ``K`` keep, ``C`` clean (shift dates / clean text), ``U`` replace UID consistently. The
conditional actions (and ``X``/``Z`` on attributes an IOD requires) are resolved per instance by the
attribute's type in the IOD of its SOP class (:meth:`CompiledProfile.for_sop_class`, types from
:mod:`.iod`). ``CompiledProfile.actions`` is the conservative table used where the SOP class is not
in the shipped IOD table: ``X/Z``→``Z``, ``X/D``→``D``, ``Z/D``→``D``, ``X/Z/D``→``D``,
``X/Z/U*``→``U`` (the weakest action that keeps an instance conformant without knowing its IOD).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from pydicom.datadict import dictionary_VR

from clinical_pipelines.deid.iod import TYPED_ACTIONS, IodTypes, Path_, iod_types, resolve

PROFILE_NAME = "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile"
PROFILE_VERSION = "2024b"

# Option column in Table E.1-1 -> (option name, DICOM code from CID 7050 for the Method Code Sequence).
OPTIONS: dict[str, tuple[str, str]] = {
    "rtnSafePrivOpt": ("Retain Safe Private Option", "113111"),
    "rtnUIDsOpt": ("Retain UIDs Option", "113110"),
    "rtnDevIdOpt": ("Retain Device Identity Option", "113109"),
    "rtnInstIdOpt": ("Retain Institution Identity Option", "113112"),
    "rtnPatCharsOpt": ("Retain Patient Characteristics Option", "113108"),
    "rtnLongFullDatesOpt": ("Retain Longitudinal Temporal Information with Full Dates Option", "113106"),
    "rtnLongModifDatesOpt": ("Retain Longitudinal Temporal Information with Modified Dates Option", "113107"),
    "cleanDescOpt": ("Clean Descriptors Option", "113105"),
    "cleanStructContOpt": ("Clean Structured Content Option", "113104"),
    "cleanGraphOpt": ("Clean Graphics Option", "113103"),
}
BASIC_PROFILE_CODE = "113100"
# Safe defaults: shifted dates keep intervals, age/sex/size stay for research, descriptors are
# cleaned. Device identity (station names, serial numbers) can name a site: opt in explicitly.
DEFAULT_OPTIONS = ("cleanDescOpt", "rtnLongModifDatesOpt", "rtnPatCharsOpt")
_CONDITIONAL = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}


@dataclass(frozen=True)
class CompiledProfile:
    """One action per tag for a chosen set of options, plus the wildcard groups."""

    options: tuple[str, ...]
    actions: dict[int, str]  # tag -> D Z X K C U (conditionals resolved conservatively, for unknown IODs)
    curves_action: str  # (50xx,xxxx)
    overlay_data_action: str  # (60xx,3000)
    overlay_comments_action: str  # (60xx,4000)
    typed: dict[int, str]  # tag -> its Table E.1-1 action where the IOD type decides (conditional, X, Z)
    sequences: frozenset[int]  # the tags of ``typed`` that are sequences
    _by_sop_class: dict[str, InstanceActions] = field(default_factory=dict, compare=False, repr=False)

    def for_sop_class(self, sop_class_uid: str) -> InstanceActions:
        """The actions for instances of ``sop_class_uid``, resolved by attribute type in its IOD (cached)."""
        found = self._by_sop_class.get(sop_class_uid)
        if found is None:
            found = InstanceActions(self, iod_types(sop_class_uid))
            if len(self._by_sop_class) < 256:  # SOP class UIDs come from the input: bound the cache
                self._by_sop_class[sop_class_uid] = found
        return found

    def method_description(self) -> list[str]:
        """Values for De-identification Method (0012,0063): profile and options, each <= 64 characters."""
        return ["PS3.15 E.1 Basic Profile " + PROFILE_VERSION, *(OPTIONS[o][0][:64] for o in self.options)]

    def method_codes(self) -> list[str]:
        """CID 7050 code values for the De-identification Method Code Sequence (0012,0064)."""
        return [BASIC_PROFILE_CODE, *(OPTIONS[o][1] for o in self.options)]


@cache
def table_rows() -> tuple[dict[str, str], ...]:
    """The rows of Table E.1-1 as shipped in the package."""
    text = resources.files("clinical_pipelines.deid").joinpath("data/ps3_15_table_e1_1.json").read_text()
    return tuple(json.loads(text)["rows"])


def _resolve(action: str) -> str:
    return _CONDITIONAL.get(action, action)


@cache
def compile_profile(options: tuple[str, ...] = DEFAULT_OPTIONS) -> CompiledProfile:
    """The per-tag actions of the Basic Profile with ``options`` applied (an option's action wins).

    ``rtnLongFullDatesOpt`` and ``rtnLongModifDatesOpt`` are mutually exclusive.
    """
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown profile option(s): {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    if {"rtnLongFullDatesOpt", "rtnLongModifDatesOpt"} <= set(options):
        raise ValueError("choose either full dates or modified dates, not both")
    actions: dict[int, str] = {}
    typed: dict[int, str] = {}
    wildcards: dict[str, str] = {}
    for row in table_rows():
        action = row["action"]
        for option in options:
            if option in row:
                action = row[option]
        tag = row["tag"].strip("()").replace(",", "")
        if "X" in tag.upper()[:4] or not all(c in "0123456789ABCDEFabcdef" for c in tag):
            wildcards[tag.upper()] = _resolve(action)
        else:
            actions[int(tag, 16)] = _resolve(action)
            if action in TYPED_ACTIONS:
                typed[int(tag, 16)] = action
    return CompiledProfile(
        options=tuple(sorted(options)),
        actions=actions,
        curves_action=wildcards.get("50XXXXXX", "X"),
        overlay_data_action=wildcards.get("60XX3000", "X"),
        overlay_comments_action=wildcards.get("60XX4000", "X"),
        typed=typed,
        sequences=frozenset(t for t in typed if _is_sequence(t)),
    )


def _is_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:
        return False


class InstanceActions:
    """The actions for the instances of one SOP class: a tag -> action table per sequence path.

    ``iod`` is None where the SOP class is not in the shipped IOD table: then every path gets the
    profile's conservative table.
    """

    _MAX_PATHS = 4096  # paths come from the input: bound what one SOP class may cache

    def __init__(self, profile: CompiledProfile, types: IodTypes | None) -> None:
        self.profile = profile
        self.types = types
        self.iod = types.iod if types is not None else None
        self._by_path: dict[Path_, dict[int, str]] = {}

    def at(self, path: Path_ = ()) -> dict[int, str]:
        """Tag -> action for the attributes of the items reached by ``path`` (sequence tags; () for the top)."""
        found = self._by_path.get(path)
        if found is not None:
            return found
        if self.types is None:
            return self.profile.actions
        actions = dict(self.profile.actions)
        type_of, sequences = self.types.type_of, self.profile.sequences
        for tag, action in self.profile.typed.items():
            actions[tag] = resolve(action, type_of((*path, tag)), sequence=tag in sequences)
        if len(self._by_path) < self._MAX_PATHS:
            self._by_path[path] = actions
        return actions
