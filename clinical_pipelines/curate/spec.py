"""Dataset specs: YAML files naming a cohort, its modalities, label rules, split ratios and governance.

A spec file holds one mapping::

    name: chest_ct_outcomes            # [a-z][a-z0-9_]*, the dataset id
    owner: imaging-research
    purpose: Chest CT with discharge outcome, for outcome prediction.
    modalities: [dicom, outcomes]      # of dicom, notes, labs, outcomes
    cohort:                            # all optional; a patient must meet every criterion given
      imaging_modality: [CT]           # DICOM Modality of at least one series
      body_part: [CHEST]               # DICOM Body Part Examined of that series
      age_band: {min: 18, max: 89}     # years, from the series (or the outcomes table)
      date_window: {start: 2015-01-01, end: 2030-12-31}  # the (shifted) study date of that series
      label_available: true            # only patients the label rules give a label
    labels:                            # optional
      table: outcomes                  # outcomes or labs
      column: outcome
      map: {deceased: deceased, readmitted_30d: readmitted}
      default: other                   # label of values not in map; null: no label
      order_by: discharge_date         # the latest row by this column gives the label
    split: {seed: 17, ratios: {train: "0.8", val: "0.1", test: "0.1"}}
    policy_tags: [research, deidentified]
    retention: research-7y
    project: chest-imaging             # optional: access grants are scoped by it (default: the name)

Errors name the file and the line (:class:`SpecError`). The spec's identity is the sha256 of its
normalised canonical JSON (comments and layout do not count).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from clinical_pipelines.curate.canonical import canonical_bytes, sha256_hex
from clinical_pipelines.modalities import DATASET_MODALITIES

LABEL_TABLES = ("outcomes", "labs")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
DEFAULT_RATIOS = {"test": "0.1", "train": "0.8", "val": "0.1"}


class SpecError(ValueError):
    """A spec that does not parse or breaks the schema; the message starts with ``file:line:``."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class AgeBand:
    """Inclusive age range in whole years; either end may be open."""

    min: int | None = None
    max: int | None = None

    def contains(self, years: int) -> bool:
        """True when ``years`` lies in the band."""
        return (self.min is None or years >= self.min) and (self.max is None or years <= self.max)

    def label(self) -> str:
        """``18-89``, ``18+`` or ``-89``: how search shows the band."""
        low = "" if self.min is None else str(self.min)
        return f"{low}-{self.max}" if self.max is not None else f"{low}+"


@dataclass(frozen=True)
class Cohort:
    """Cohort criteria; empty tuples and None mean "no constraint"."""

    imaging_modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    age_band: AgeBand | None = None
    date_start: str | None = None  # YYYYMMDD
    date_end: str | None = None
    label_available: bool = False

    @property
    def has_imaging_criteria(self) -> bool:
        """True when a patient needs a matching DICOM series to be in the cohort."""
        return bool(self.imaging_modality or self.body_part or self.date_start or self.date_end)


@dataclass(frozen=True)
class LabelRules:
    """How a patient's label is read from a de-identified table."""

    column: str
    table: str = "outcomes"
    mapping: tuple[tuple[str, str], ...] = ()
    default: str | None = None
    order_by: str | None = None

    def label_for(self, value: str) -> str | None:
        """The label a cell value gives (None: no label)."""
        if not value:
            return None
        mapped = dict(self.mapping)
        if not mapped:
            return value
        return mapped.get(value, self.default)


@dataclass(frozen=True)
class DatasetSpec:
    """One parsed dataset spec (see the module docstring for the YAML form)."""

    name: str
    owner: str
    purpose: str
    modalities: tuple[str, ...]
    retention: str
    cohort: Cohort = field(default_factory=Cohort)
    labels: LabelRules | None = None
    split_seed: int = 0
    split_ratios: tuple[tuple[str, str], ...] = tuple(sorted(DEFAULT_RATIOS.items()))
    policy_tags: tuple[str, ...] = ()
    project: str | None = None  # grants are scoped by project; None: the dataset's own name
    path: str = ""

    @property
    def project_name(self) -> str:
        """The project access grants name for this dataset: ``project`` if the spec gives one, else ``name``."""
        return self.project or self.name

    def to_doc(self) -> dict[str, Any]:
        """The normalised spec as canonical-JSON-ready data (no floats, sorted lists)."""
        cohort = self.cohort
        doc: dict[str, Any] = {
            "name": self.name,
            "owner": self.owner,
            "purpose": self.purpose,
            "modalities": sorted(self.modalities),
            "cohort": {
                "imaging_modality": sorted(cohort.imaging_modality),
                "body_part": sorted(cohort.body_part),
                "age_band": None
                if cohort.age_band is None
                else {"min": cohort.age_band.min, "max": cohort.age_band.max},
                "date_window": {"start": cohort.date_start, "end": cohort.date_end},
                "label_available": cohort.label_available,
            },
            "labels": None
            if self.labels is None
            else {
                "table": self.labels.table,
                "column": self.labels.column,
                "map": dict(self.labels.mapping),
                "default": self.labels.default,
                "order_by": self.labels.order_by,
            },
            "split": {"seed": self.split_seed, "ratios": dict(self.split_ratios)},
            "policy_tags": sorted(self.policy_tags),
            "retention": self.retention,
        }
        if self.project is not None:  # only when given: specs without one keep the identity they had
            doc["project"] = self.project
        return doc

    @property
    def sha256(self) -> str:
        """Identity of the spec's content (not of its file's layout or comments)."""
        return sha256_hex(canonical_bytes(self.to_doc()))

    @property
    def ratios(self) -> dict[str, str]:
        """Split ratios as exact decimal strings."""
        return dict(self.split_ratios)


# -- parsing -------------------------------------------------------------------------------------


class _Parser:
    """Walks the YAML node tree so every error can name its line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, message: str) -> SpecError:
        return SpecError(self.path, node.start_mark.line + 1, message)

    def value(self, node: yaml.Node) -> Any:
        return self._constructor.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, what: str, known: Iterable[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, yaml.Node] = {}
        allowed = tuple(known)
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str) or key not in allowed:
                raise self.fail(key_node, f"unknown field {key!r} in {what} (known: {', '.join(allowed)})")
            if key in out:
                raise self.fail(key_node, f"field {key!r} given twice in {what}")
            out[key] = value_node
        return out

    def text(self, node: yaml.Node, what: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"{what} must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(node, f"{what} {value!r} must match {pattern.pattern}")
        return value.strip()

    def optional_text(self, node: yaml.Node | None, what: str) -> str | None:
        if node is None or self.value(node) is None:
            return None
        return self.text(node, what)

    def strings(
        self, node: yaml.Node, what: str, check: Callable[[yaml.Node, str], str] | None = None
    ) -> tuple[str, ...]:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out = []
        for item in items:
            text = self.text(item, what)
            out.append(check(item, text) if check else text)
        return tuple(dict.fromkeys(out))

    def integer(self, node: yaml.Node, what: str) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"{what} must be an integer")
        return value

    def date(self, node: yaml.Node, what: str) -> str:
        value = self.value(node)
        if isinstance(value, datetime.date):
            return value.strftime("%Y%m%d")
        text = str(value).replace("-", "") if isinstance(value, (str, int)) else ""
        try:
            return datetime.datetime.strptime(text, "%Y%m%d").strftime("%Y%m%d")
        except ValueError:
            raise self.fail(node, f"{what} must be a date (YYYY-MM-DD)") from None


def _ratios(parser: _Parser, node: yaml.Node) -> tuple[tuple[str, str], ...]:
    fields = parser.mapping(node, "split.ratios", _any_key(node, parser))
    out: dict[str, str] = {}
    for name, value_node in fields.items():
        if not NAME.match(name):
            raise parser.fail(value_node, f"split name {name!r} must match {NAME.pattern}")
        value = parser.value(value_node)
        try:
            exact = (
                Decimal(str(value)) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
            )
        except InvalidOperation:
            exact = None
        if exact is None or not exact.is_finite() or exact <= 0:
            raise parser.fail(value_node, f'ratio of split {name!r} must be a positive decimal such as "0.8"')
        out[name] = format(exact.normalize(), "f")
    if not out:
        raise parser.fail(node, "split.ratios is empty")
    if sum(Fraction(v) for v in out.values()) != 1:
        raise parser.fail(node, f"split ratios must sum to 1 (got {' + '.join(out.values())})")
    return tuple(sorted(out.items()))


def _any_key(node: yaml.Node, parser: _Parser) -> list[str]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [k for k in (parser.value(k) for k, _ in node.value) if isinstance(k, str)]


def _cohort(parser: _Parser, node: yaml.Node) -> Cohort:
    fields = parser.mapping(
        node, "cohort", ("imaging_modality", "body_part", "age_band", "date_window", "label_available")
    )
    age = None
    if "age_band" in fields:
        band = parser.mapping(fields["age_band"], "cohort.age_band", ("min", "max"))
        low = parser.integer(band["min"], "age_band.min") if "min" in band else None
        high = parser.integer(band["max"], "age_band.max") if "max" in band else None
        if low is None and high is None:
            raise parser.fail(fields["age_band"], "age_band needs min and/or max")
        if low is not None and high is not None and low > high:
            raise parser.fail(fields["age_band"], "age_band min is above max")
        age = AgeBand(low, high)
    start = end = None
    if "date_window" in fields:
        window = parser.mapping(fields["date_window"], "cohort.date_window", ("start", "end"))
        start = parser.date(window["start"], "date_window.start") if "start" in window else None
        end = parser.date(window["end"], "date_window.end") if "end" in window else None
        if start and end and start > end:
            raise parser.fail(fields["date_window"], "date_window start is after end")
    label_available = False
    if "label_available" in fields:
        label_available = parser.value(fields["label_available"])
        if not isinstance(label_available, bool):
            raise parser.fail(fields["label_available"], "label_available must be true or false")
    return Cohort(
        imaging_modality=tuple(
            s.upper() for s in parser.strings(fields["imaging_modality"], "imaging_modality")
        ) if "imaging_modality" in fields else (),
        body_part=tuple(s.upper() for s in parser.strings(fields["body_part"], "body_part"))
        if "body_part" in fields
        else (),
        age_band=age,
        date_start=start,
        date_end=end,
        label_available=label_available,
    )  # fmt: skip


def _labels(parser: _Parser, node: yaml.Node) -> LabelRules:
    fields = parser.mapping(node, "labels", ("table", "column", "map", "default", "order_by"))
    if "column" not in fields:
        raise parser.fail(node, "labels needs a column")
    table = parser.text(fields["table"], "labels.table") if "table" in fields else "outcomes"
    if table not in LABEL_TABLES:
        raise parser.fail(fields["table"], f"labels.table must be one of {', '.join(LABEL_TABLES)}")
    mapping: dict[str, str] = {}
    if "map" in fields:
        for key, value in parser.mapping(fields["map"], "labels.map", _any_key(fields["map"], parser)).items():
            mapping[key] = parser.text(value, f"label of {key!r}")
    return LabelRules(
        column=parser.text(fields["column"], "labels.column"),
        table=table,
        mapping=tuple(sorted(mapping.items())),
        default=parser.optional_text(fields.get("default"), "labels.default"),
        order_by=parser.optional_text(fields.get("order_by"), "labels.order_by"),
    )


_TOP = ("name", "owner", "purpose", "modalities", "cohort", "labels", "split", "policy_tags", "retention", "project")
_REQUIRED = ("name", "owner", "purpose", "modalities", "retention")


def parse_spec(text: str, path: str | Path = "<spec>") -> DatasetSpec:
    """Parse one spec's YAML text; :class:`SpecError` (naming ``path`` and the line) on any problem."""
    parser = _Parser(str(path))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(path, (mark.line + 1) if mark else 1, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(path, 1, f"not valid YAML: {exc}") from None
    if root is None:
        raise SpecError(path, 1, "the spec is empty")
    try:
        fields = parser.mapping(root, "the spec", _TOP)
        missing = [k for k in _REQUIRED if k not in fields]
        if missing:
            raise parser.fail(root, f"missing required field(s): {', '.join(missing)}")

        def modality(node: yaml.Node, value: str) -> str:
            if value not in DATASET_MODALITIES:
                raise parser.fail(node, f"unknown modality {value!r} (known: {', '.join(DATASET_MODALITIES)})")
            return value

        def tag(node: yaml.Node, value: str) -> str:
            if not TAG.match(value):
                raise parser.fail(node, f"policy tag {value!r} must match {TAG.pattern}")
            return value

        seed, ratios = 0, tuple(sorted(DEFAULT_RATIOS.items()))
        if "split" in fields:
            split = parser.mapping(fields["split"], "split", ("seed", "ratios"))
            seed = parser.integer(split["seed"], "split.seed") if "seed" in split else 0
            ratios = _ratios(parser, split["ratios"]) if "ratios" in split else ratios
        cohort = _cohort(parser, fields["cohort"]) if "cohort" in fields else Cohort()
        labels = _labels(parser, fields["labels"]) if "labels" in fields else None
        if cohort.label_available and labels is None:
            raise parser.fail(fields["cohort"], "cohort.label_available needs label rules (labels:)")
        return DatasetSpec(
            name=parser.text(fields["name"], "name", NAME),
            owner=parser.text(fields["owner"], "owner"),
            purpose=parser.text(fields["purpose"], "purpose"),
            modalities=parser.strings(fields["modalities"], "modality", modality),
            retention=parser.text(fields["retention"], "retention", TAG),
            cohort=cohort,
            labels=labels,
            split_seed=seed,
            split_ratios=ratios,
            policy_tags=parser.strings(fields["policy_tags"], "policy tag", tag) if "policy_tags" in fields else (),
            project=parser.text(fields["project"], "project", TAG) if "project" in fields else None,
            path=str(path),
        )
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(path, (mark.line + 1) if mark else 1, f"bad value: {exc.problem}") from None


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and parse one spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(path, 1, "not UTF-8 text") from None
    return parse_spec(text, path)


def load_specs(folder: str | Path) -> list[DatasetSpec]:
    """Every ``*.yaml``/``*.yml`` spec in ``folder``, sorted by name; two specs with one name is an error."""
    folder = Path(folder)
    specs: dict[str, DatasetSpec] = {}
    if not folder.is_dir():
        return []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        spec = load_spec(path)
        if spec.name in specs:
            raise SpecError(path, 1, f"dataset name {spec.name!r} is also used by {specs[spec.name].path}")
        specs[spec.name] = spec
    return [specs[name] for name in sorted(specs)]


def shipped_specs_dir() -> Path:
    """The folder of the sample specs shipped with the package."""
    return Path(__file__).resolve().parent / "specs"
