"""Sources and classification at ingest: who sends drops, under which approval, for which purposes, how sensitive.

A YAML file (``CLINICAL_PIPELINES_SOURCES``; default: the shipped ``sources.yaml``)::

    sources:
      childrens-hospital:
        owner: pediatric-imaging          # accountable team
        approval: IRB-2025-042            # study or approval id
        purposes: [research, training]    # what the data may be used for
        sensitivity: [pediatric]          # restrictive tags (plain words)

Errors name the file and the line (:class:`SourcesError`). Each drop is classified once, at ingest
(:func:`classify_drop`), and the classification is kept beside the drop's raw record, so a later change of
this file does not rewrite history. A drop from a source the file does not name is ingested (nothing is lost)
and tagged ``unregistered``, a restrictive tag nobody holds by default.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from clinical_pipelines.curate.spec import TAG, SpecError, _Parser
from clinical_pipelines.storage.base import ObjectAlreadyExists, ObjectNotFound, ObjectStore, read_all
from clinical_pipelines.zones import RAW

SHIPPED_SOURCES = Path(__file__).resolve().parent / "sources.yaml"
#: A tag with a colon describes (``source:…``, ``deid:…``); a plain one restricts access (``phi``, ``pediatric``).
LABEL_SEPARATOR = ":"
PHI = "phi"
PURPOSE_LABEL = "purpose:"  # a version's label for each purpose all its sources allow
UNREGISTERED = "unregistered"
_WORD = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


class SourcesError(SpecError):
    """A sources file that does not parse or breaks the schema; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class SourcePolicy:
    """One source's governance."""

    owner: str
    approval: str
    purposes: tuple[str, ...]
    sensitivity: tuple[str, ...] = ()


@dataclass(frozen=True)
class Classification:
    """A drop's classification, fixed at ingest: its policy tags and the purposes its data may serve."""

    source: str
    drop_id: str
    tags: tuple[str, ...]
    owner: str | None
    approval: str | None
    purposes: tuple[str, ...]

    def to_json(self) -> bytes:
        """Canonical JSON."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Classification:
        """Inverse of :meth:`to_json`."""
        doc = json.loads(data)
        return cls(str(doc["source"]), str(doc["drop_id"]), tuple(doc["tags"]), doc.get("owner"),
                   doc.get("approval"), tuple(doc.get("purposes", ())))  # fmt: skip


def allowed_purposes(tags: Iterable[str]) -> tuple[str, ...] | None:
    """The purposes a version's ``purpose:`` labels allow (``()`` for ``purpose:none``), or None: unconstrained."""
    found = sorted(t.removeprefix(PURPOSE_LABEL) for t in tags if t.startswith(PURPOSE_LABEL))
    if not found:
        return None
    return tuple(p for p in found if p != "none")


def restrictive(tags: Iterable[str]) -> tuple[str, ...]:
    """The tags that restrict access, sorted: plain words (``phi``, ``pediatric``, ``research``); a tag with a colon
    (``source:…``, ``deid:…``) only describes."""
    return tuple(sorted({t for t in tags if LABEL_SEPARATOR not in t}))


class _SourcesParser(_Parser):
    def fail(self, node: yaml.Node, message: str) -> SourcesError:
        return SourcesError(self.path, node.start_mark.line + 1, message)


def parse_sources(text: str, path: str | Path = "<sources>") -> dict[str, SourcePolicy]:
    """Parse a sources file's text; :class:`SourcesError` naming ``path`` and the line on any problem."""
    parser = _SourcesParser(str(path))
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SourcesError(path, (mark.line + 1) if mark else 1, f"not valid YAML: {exc}") from None
    if root is None:
        raise SourcesError(path, 1, "the sources file is empty")
    top = parser.mapping(root, "the sources file", ("sources",))
    if "sources" not in top or not isinstance(top["sources"], yaml.MappingNode):
        raise parser.fail(root, "needs a mapping 'sources:' of source name to its policy")
    out: dict[str, SourcePolicy] = {}
    for name_node, body in top["sources"].value:
        name = parser.value(name_node)
        if not isinstance(name, str) or not TAG.match(name):
            raise parser.fail(name_node, f"source name {name!r} must match {TAG.pattern}")
        if name in out:
            raise parser.fail(name_node, f"source {name!r} given twice")
        fields = parser.mapping(body, f"source {name}", ("owner", "approval", "purposes", "sensitivity"))
        missing = [k for k in ("owner", "approval", "purposes") if k not in fields]
        if missing:
            raise parser.fail(body, f"source {name} is missing: {', '.join(missing)}")

        def word(node: yaml.Node, value: str) -> str:
            if not _WORD.match(value):
                raise parser.fail(node, f"{value!r} must be a lower-case word ({_WORD.pattern})")
            return value

        sensitivity = parser.strings(fields["sensitivity"], "sensitivity tag", word) if "sensitivity" in fields else ()
        if PHI in sensitivity or UNREGISTERED in sensitivity:
            raise parser.fail(fields["sensitivity"], f"{PHI!r} and {UNREGISTERED!r} are set by the platform")
        out[name] = SourcePolicy(
            owner=parser.text(fields["owner"], "owner"),
            approval=parser.text(fields["approval"], "approval", TAG),
            purposes=parser.strings(fields["purposes"], "purpose", word),
            sensitivity=sensitivity,
        )
    return out


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> dict[str, SourcePolicy]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise SourcesError(path, 1, f"cannot read it ({why})") from None
    return parse_sources(text, path)


def load_sources(path: str | Path) -> dict[str, SourcePolicy]:
    """The sources file at ``path`` (parsed once per process and change)."""
    p = Path(path)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise SourcesError(p, 1, f"cannot read it ({exc.strerror or type(exc).__name__})") from None
    return _load(str(p), mtime)


def classify_drop(source: str, drop_id: str, modalities: tuple[str, ...] | list[str],
                  sources: dict[str, SourcePolicy]) -> Classification:  # fmt: skip
    """The tags of a raw drop: ``phi``; ``source:<name>``; ``modality:<m>`` for each modality it holds; the
    source's ``approval:<id>`` and sensitivity tags, or ``unregistered`` for a source the file does not name."""
    tags = {PHI, f"source:{source}", *(f"modality:{m}" for m in modalities)}
    policy = sources.get(source)
    if policy is None:
        tags.add(UNREGISTERED)
        return Classification(source, drop_id, tuple(sorted(tags)), None, None, ())
    tags.update({f"approval:{policy.approval}", *policy.sensitivity})
    return Classification(source, drop_id, tuple(sorted(tags)), policy.owner, policy.approval, policy.purposes)


def write_classification(store: ObjectStore, classification: Classification) -> Classification:
    """Keep ``classification`` beside the drop's raw record unless one is there already (the first wins: a drop
    is classified once); returns the one kept."""
    key = classification_key(classification.source, classification.drop_id)
    try:
        store.put_bytes(key, classification.to_json(), write_once=True)
        return classification
    except ObjectAlreadyExists:
        return read_classification(store, classification.source, classification.drop_id) or classification


def read_classification(store: ObjectStore, source: str, drop_id: str) -> Classification | None:
    """A drop's classification, or None for a drop ingested before classification existed."""
    try:
        return Classification.from_json(read_all(store, classification_key(source, drop_id)))
    except ObjectNotFound:
        return None


def classification_key(source: str, drop_id: str) -> str:
    """Where a drop's classification is kept (plain JSON beside its raw record: tags and names, no PHI)."""
    return f"{RAW}/drops/{source}/{drop_id}/classification.json"
