"""Access by grant: who may do what to which data, decided from the catalog database and audited.

A grant is principal x project x policy tag x action (:data:`ACTIONS`); ``*`` as project or tag means
any. An action on data (a :class:`Scope`: the dataset's project and the policy tags the data carries) is
allowed when, for every tag the data carries, the principal holds a grant for that action on that project
(or ``*``) and that tag (or ``*``); data without tags needs one grant for the action on the project. So a
principal granted ``read`` on ``research`` data cannot read a version that is also ``pediatric``. A declared
purpose must also be one the data's sources allow (:attr:`Scope.purposes`).

Every decision is written to the audit log (:mod:`clinical_pipelines.catalog.audit`): a refusal at once
(``refused``, naming the missing grant), an allowed action once, when it ends (``allowed``, or ``failed``
with the error's class when it raised). The audit action is ``<grant action>.<operation>``
(``read.show``, ``reproduce.reproduce``, ``grant.add``) so an auditor can ask "who read" directly.

Separation of duties: a principal that may ``promote`` or ``delete`` datasets never also holds ``keys``,
and the reverse; :meth:`Access.grant` refuses a grant that would combine them. Nobody grants to
themselves. The access review (:meth:`Access.review`) revokes grants unused for N days and grants on closed
projects, but never the last ``grant`` on everything, so the platform cannot lock out its administrators.

Principals are names the caller asserts (``--as`` or ``CLINICAL_PIPELINES_PRINCIPAL``); authenticating
them is the deployment's job (OS account, SSO in front of the CLI). This module decides and records.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clinical_pipelines.catalog.audit import AuditEntry, AuditLog
from clinical_pipelines.catalog.models import (
    AccessGrant,
    Dataset,
    Principal,
    Project,
    Version,
    utcnow,
)
from clinical_pipelines.catalog.tags import tags_of
from clinical_pipelines.landing.sources import allowed_purposes, restrictive

ACTIONS = ("read", "reproduce", "export", "promote", "delete", "hold", "grant", "keys")
ANY = "*"
#: The principal the embedded default creates, so ``make dev`` needs no setup.
LOCAL_ADMIN = "local-admin"
#: Everything but ``keys``: separation of duties holds for the local administrator too.
ADMIN_ACTIONS = tuple(a for a in ACTIONS if a != "keys")
#: Who may change or remove datasets never holds the keys that could make them unreadable, and the reverse.
DUTY_CONFLICT = (frozenset({"promote", "delete"}), frozenset({"keys"}))
SYSTEM = "system"
REVIEWER = "access-review"
PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]{0,199}")
#: A purpose is a code (``training``, ``qa``, ``irb-2024-117``), never free text: the audit log holds no PHI.
PURPOSE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
SCOPE_NAME = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class AccessDenied(PermissionError):
    """An action the principal holds no grant for (or a grant policy forbids); the message is one line."""


class AccessError(ValueError):
    """A malformed access request (unknown action, bad name); the message is one line."""


@dataclass(frozen=True)
class Scope:
    """What an action touches: the project, the policy tags the data carries, and the audit target."""

    project: str
    tags: tuple[str, ...]
    target: str
    purposes: tuple[str, ...] | None = None  # what the data's sources allow a declared purpose to be; None: any


@dataclass(frozen=True)
class GrantRow:
    """One stored grant."""

    principal: str
    action: str
    project: str
    tag: str
    granted_by: str
    granted_at: datetime.datetime
    last_used_at: datetime.datetime | None

    @property
    def last_activity(self) -> datetime.datetime:
        """When the grant was last used, or granted if never used."""
        return self.last_used_at or self.granted_at

    def describe(self) -> str:
        """``ACTION project=P tag=T`` (audit detail and review tables)."""
        return f"{self.action} project={self.project} tag={self.tag}"


@dataclass(frozen=True)
class Revocation:
    """A grant the access review revoked (or kept, with ``kept``), and why."""

    grant: GrantRow
    reason: str
    kept: bool = False


@dataclass
class Activity:
    """What the body of :meth:`Access.perform` may add to the audit record: a short detail (counts, ids)."""

    detail: str | None = None


def _row(g: AccessGrant) -> GrantRow:
    return GrantRow(g.principal, g.action, g.project, g.tag, g.granted_by, g.granted_at, g.last_used_at)


def check_principal(name: str) -> str:
    """``name`` if it is a valid principal name, else :class:`AccessError`."""
    if not isinstance(name, str) or not PRINCIPAL.fullmatch(name):
        raise AccessError(f"a principal name must match {PRINCIPAL.pattern}")
    return name


def check_purpose(purpose: str | None) -> str | None:
    """``purpose`` if it is a purpose code (or None), else :class:`AccessError` (free text could carry PHI)."""
    if purpose is not None and not PURPOSE.fullmatch(purpose):
        raise AccessError(f"a purpose must be a code matching {PURPOSE.pattern} (e.g. training, qa), not free text")
    return purpose


def _check_actions(actions: Iterable[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(actions))
    unknown = [a for a in out if a not in ACTIONS]
    if not out or unknown:
        raise AccessError(f"unknown action(s) {', '.join(unknown) or '(none given)'}: use {', '.join(ACTIONS)}")
    return out


def _check_scope_name(value: str, what: str) -> str:
    if not SCOPE_NAME.fullmatch(value):
        raise AccessError(f"{what} must be * or a project or tag name ({SCOPE_NAME.pattern})")
    return value


def conflict(actions: Iterable[str]) -> tuple[str, str] | None:
    """A pair of actions that separation of duties forbids one principal to hold together, or None."""
    held = set(actions)
    left, right = (sorted(side & held) for side in DUTY_CONFLICT)
    return (left[0], right[0]) if left and right else None


def _missing(principal: str, action: str, scope: Scope, tag: str | None) -> str:
    where = f"project {scope.project}" + (f" for tag {tag}" if tag else "")
    fix = f"clinical-pipelines access grant {principal} --action {action} --project {scope.project}"
    return (f"{principal} has no '{action}' grant on {where} (a principal holding 'grant' there can run: "
            f"{fix}{f' --tag {tag}' if tag else ''})")  # fmt: skip


def _cover(grants: Sequence[tuple[str, int, str, str]], scope: Scope) -> tuple[list[int], str | None]:
    """Ids of the grants (``(principal, id, project, tag)``) that together cover ``scope``: one on its project (or
    ``*``) for each tag it carries (or ``*``), any one on its project when it carries none; else ``([], the first
    tag left uncovered, "" for none)``."""
    mine = [(grant_id, tag) for _, grant_id, project, tag in grants if project in (ANY, scope.project)]
    used: list[int] = []
    for needed in scope.tags or (None,):
        match = [grant_id for grant_id, tag in mine if needed is None or tag in (ANY, needed)]
        if not match:
            return [], needed or ""
        used.append(match[0])
    return sorted(set(used)), None


def _grant_scope(project: str, tag: str, principal: str) -> Scope:
    """What granting on ``project`` x ``tag`` touches: granting ``*`` needs a ``grant`` on ``*`` itself (the tag
    ``*`` is only covered by a grant on ``*``), so a grantor cannot widen its own reach."""
    return Scope(project, (tag,), f"principal:{principal}")


class Access:
    """Grants and decisions over the catalog database behind ``engine`` (migrated by :meth:`Catalog.open`)."""

    def __init__(self, engine: Engine, audit: AuditLog | None = None) -> None:
        self.engine = engine
        self.audit = audit or AuditLog(engine)

    # -- principals ----------------------------------------------------------------------------

    def principals(self) -> list[str]:
        """Every known principal, sorted."""
        with Session(self.engine) as session:
            return list(session.scalars(select(Principal.name).order_by(Principal.name)))

    def bootstrap(self, admin: str = LOCAL_ADMIN, *, by: str = SYSTEM) -> bool:
        """Create ``admin`` holding :data:`ADMIN_ACTIONS` on everything, if the catalog has no principal yet.

        Returns whether it did (False once any principal exists: an administrator removed later is not
        silently recreated). Audited as ``grant.bootstrap``. Concurrent callers create it once.
        """
        check_principal(admin)
        try:
            with Session(self.engine) as session, session.begin():
                if session.scalar(select(func.count()).select_from(Principal)):
                    return False
                session.add(Principal(name=admin, created_by=by))
                session.flush()
                for action in ADMIN_ACTIONS:
                    session.add(AccessGrant(principal=admin, project=ANY, tag=ANY, action=action, granted_by=by))
        except IntegrityError:  # another process bootstrapped first
            return False
        self.audit.append(AuditEntry(by, "grant.bootstrap", f"principal:{admin}", "allowed",
                                     detail=f"{','.join(ADMIN_ACTIONS)} project=* tag=*"))  # fmt: skip
        return True

    # -- scopes --------------------------------------------------------------------------------

    def version_scope(self, version_id: str, dataset: str | None = None) -> Scope:
        """The scope of a version: its dataset's project and the restrictive policy tags (those without a colon)
        of its spec and of its own (its drops' sensitivity, e.g. ``pediatric``). A version the catalog does not
        know (a manifest file from elsewhere) is scoped by the dataset name it gives and carries no tags."""
        target = f"version:{version_id}"
        with Session(self.engine) as session:
            row = session.execute(
                select(Dataset.id, Dataset.name, Dataset.project).join(Version).where(Version.id == version_id)
            ).first()
            if row is None:
                return Scope(dataset or "unknown", (), target)
            tags = tags_of(session, row.id, version_id)
        return Scope(row.project or row.name, restrictive(tags), target, allowed_purposes(tags))

    def dataset_scope(self, dataset: str) -> Scope:
        """The scope of a whole dataset: its project and its spec's restrictive tags (``dataset:<name>``)."""
        with Session(self.engine) as session:
            query = select(Dataset.id, Dataset.name, Dataset.project).where(Dataset.name == dataset)
            row = session.execute(query).first()
            if row is None:
                return Scope(dataset, (), f"dataset:{dataset}")
            tags = tags_of(session, row.id)
        return Scope(row.project or row.name, restrictive(tags), f"dataset:{dataset}")

    # -- decisions -----------------------------------------------------------------------------

    def _grants(self, session: Session, action: str, principal: str | None = None) -> list[tuple[str, int, str, str]]:
        """``(principal, id, project, tag)`` of every grant of ``action`` (``principal``'s only, if given)."""
        query = select(AccessGrant.principal, AccessGrant.id, AccessGrant.project, AccessGrant.tag).where(
            AccessGrant.action == action
        )
        if principal is not None:
            query = query.where(AccessGrant.principal == principal)
        return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]

    def _covering(self, session: Session, principal: str, action: str, scope: Scope) -> tuple[list[int], str | None]:
        """Ids of ``principal``'s grants that together cover ``scope`` for ``action``; else ``([], missing tag)``."""
        return _cover(self._grants(session, action, principal), scope)

    def may(self, principal: str, action: str, scope: Scope) -> bool:
        """Whether ``principal`` may ``action`` on ``scope`` (no audit record: for filtering what to show)."""
        return self.readable(principal, action, [scope])[0]

    def readable(self, principal: str, action: str, scopes: Sequence[Scope]) -> list[bool]:
        """For each scope, whether ``principal`` may ``action`` on it (one query; no audit record)."""
        with Session(self.engine) as session:
            grants = self._grants(session, action, principal)
        return [bool(_cover(grants, s)[0]) for s in scopes]

    def who_may(self, action: str, scope: Scope) -> list[str]:
        """Every principal that may ``action`` on ``scope``, sorted (one query)."""
        with Session(self.engine) as session:
            grants = self._grants(session, action)
        by_principal: dict[str, list[tuple[str, int, str, str]]] = {}
        for grant in grants:
            by_principal.setdefault(grant[0], []).append(grant)
        return sorted(name for name, mine in by_principal.items() if _cover(mine, scope)[0])

    def _decide(self, principal: str, action: str, scope: Scope, operation: str, purpose: str | None) -> list[int]:
        """The grants allowing it, or :class:`AccessDenied` after a ``refused`` audit record."""
        if action not in ACTIONS:
            raise AccessError(f"unknown action {action!r}: use {', '.join(ACTIONS)}")
        check_principal(principal)
        check_purpose(purpose)
        with Session(self.engine) as session:
            used, missing = self._covering(session, principal, action, scope)
        if not used:
            self.audit.append(AuditEntry(principal, f"{action}.{operation}", scope.target, "refused", purpose,
                                         f"missing {action} project={scope.project} tag={missing or '*'}"))  # fmt: skip
            raise AccessDenied(_missing(principal, action, scope, missing or None))
        if purpose is not None and scope.purposes is not None and purpose not in scope.purposes:
            allowed = ", ".join(scope.purposes) or "none"
            why = f"purpose not allowed by its sources (allowed: {allowed})"
            self.audit.append(AuditEntry(principal, f"{action}.{operation}", scope.target, "refused", purpose, why))
            raise AccessDenied(f"purpose '{purpose}' is not allowed for {scope.target} (its sources allow: {allowed})")
        return used

    def authorize_somewhere(self, principal: str, action: str, *, operation: str, target: str,
                            purpose: str | None = None, detail: str | None = None) -> None:  # fmt: skip
        """Allow an action that needs ``action`` on some project (a catalog search, whose results the caller
        then filters with :meth:`readable`), recorded once; refused and recorded without any such grant.
        It does not count as use of a grant (it reads no data)."""
        check_principal(principal)
        check_purpose(purpose)
        with Session(self.engine) as session:
            held = session.scalar(select(func.count()).select_from(AccessGrant).where(
                AccessGrant.principal == principal, AccessGrant.action == action))  # fmt: skip
        if not held:
            self.audit.append(AuditEntry(principal, f"{action}.{operation}", target, "refused", purpose,
                                         f"missing {action} project=* tag=*"))  # fmt: skip
            fix = f"clinical-pipelines access grant {principal} --action {action} --project PROJECT"
            raise AccessDenied(f"{principal} has no '{action}' grant on any project (a principal holding 'grant' "
                               f"can run: {fix})")  # fmt: skip
        self.audit.append(AuditEntry(principal, f"{action}.{operation}", target, "allowed", purpose, detail))

    def _touch(self, grant_ids: Sequence[int]) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(AccessGrant).where(AccessGrant.id.in_(grant_ids)).values(last_used_at=utcnow()))

    def authorize(self, principal: str, action: str, scope: Scope, *, operation: str, purpose: str | None = None,
                  detail: str | None = None) -> None:  # fmt: skip
        """Allow ``action`` now and record it once as ``allowed`` (for actions with no end the caller sees, such
        as opening a training reader); :class:`AccessDenied`, recorded as ``refused``, without a grant."""
        used = self._decide(principal, action, scope, operation, purpose)
        self._touch(used)
        self.audit.append(AuditEntry(principal, f"{action}.{operation}", scope.target, "allowed", purpose, detail))

    @contextmanager
    def perform(self, principal: str, action: str, scope: Scope, *, operation: str,
                purpose: str | None = None) -> Iterator[Activity]:  # fmt: skip
        """Run the body as ``action`` on ``scope``: refused (recorded, :class:`AccessDenied`) before it starts
        without a grant; recorded once when it ends: ``allowed``, or ``failed`` (with the error's class) if it
        raised. The body may set :attr:`Activity.detail` (counts, ids: never PHI)."""
        used = self._decide(principal, action, scope, operation, purpose)
        activity = Activity()
        try:
            yield activity
        except BaseException as exc:
            self.audit.append(AuditEntry(principal, f"{action}.{operation}", scope.target, "failed", purpose,
                                         f"error={type(exc).__name__}"))  # fmt: skip
            raise
        self._touch(used)
        self.audit.append(AuditEntry(principal, f"{action}.{operation}", scope.target, "allowed", purpose,
                                     activity.detail))  # fmt: skip

    # -- administration ------------------------------------------------------------------------

    def grants(self, principal: str | None = None) -> list[GrantRow]:
        """Every grant (or ``principal``'s), sorted by principal, action, project, tag."""
        query = select(AccessGrant).order_by(AccessGrant.principal, AccessGrant.action, AccessGrant.project,
                                             AccessGrant.tag)  # fmt: skip
        if principal is not None:
            query = query.where(AccessGrant.principal == principal)
        with Session(self.engine) as session:
            return [_row(g) for g in session.scalars(query)]

    def _refuse(self, grantor: str, operation: str, principal: str, detail: str, message: str) -> AccessDenied:
        self.audit.append(AuditEntry(grantor, f"grant.{operation}", f"principal:{principal}", "refused",
                                     detail=detail))  # fmt: skip
        return AccessDenied(message)

    def grant(self, grantor: str, principal: str, actions: Iterable[str], *, project: str = ANY,
              tag: str = ANY) -> list[GrantRow]:  # fmt: skip
        """Grant ``principal`` each of ``actions`` on ``project`` x ``tag``; returns the grants added (held ones
        are kept as they were).

        Refused (:class:`AccessDenied`, audited) unless ``grantor`` holds ``grant`` covering that project and
        tag; when ``grantor`` is ``principal``; and when the principal would then hold both sides of
        :data:`DUTY_CONFLICT` anywhere. The principal is created if new.
        """
        check_principal(grantor)
        check_principal(principal)
        wanted = _check_actions(actions)
        project, tag = _check_scope_name(project, "--project"), _check_scope_name(tag, "--tag")
        detail = f"{','.join(wanted)} project={project} tag={tag}"
        self._decide(grantor, "grant", _grant_scope(project, tag, principal), "add", None)
        if grantor == principal:
            raise self._refuse(grantor, "add", principal, detail + " self-grant",
                               f"{grantor} cannot grant to itself: another principal holding 'grant' must")  # fmt: skip
        held = {g.action for g in self.grants(principal)}
        clash = conflict(held | set(wanted))
        if clash:
            side = clash[0] if clash[0] in held else clash[1]
            other = clash[1] if side == clash[0] else clash[0]
            why = (f"separation of duties: {principal} holds '{side}', so it cannot also hold '{other}'"
                   if side in held else f"separation of duties: one principal cannot hold both '{clash[0]}' "
                   f"and '{clash[1]}'")  # fmt: skip
            raise self._refuse(grantor, "add", principal, detail + f" conflict={clash[0]}+{clash[1]}", why)
        added: list[GrantRow] = []
        for attempt in range(3):
            try:
                with Session(self.engine) as session, session.begin():
                    if session.get(Principal, principal) is None:
                        session.add(Principal(name=principal, created_by=grantor))
                        session.flush()
                    for action in wanted:
                        exists = session.scalar(select(AccessGrant.id).where(
                            AccessGrant.principal == principal, AccessGrant.action == action,
                            AccessGrant.project == project, AccessGrant.tag == tag,
                        ))  # fmt: skip
                        if exists is None:
                            row = AccessGrant(principal=principal, action=action, project=project, tag=tag,
                                              granted_by=grantor, granted_at=utcnow())  # fmt: skip
                            session.add(row)
                            session.flush()
                            added.append(_row(row))
                break
            except IntegrityError:  # a concurrent grant of the same thing: go again, as a no-op where held
                added = []
                if attempt == 2:
                    raise
        self.audit.append(AuditEntry(grantor, "grant.add", f"principal:{principal}", "allowed",
                                     detail=detail + f" added={len(added)}"))  # fmt: skip
        return added

    def revoke(self, grantor: str, principal: str, actions: Iterable[str], *, project: str = ANY,
               tag: str = ANY) -> int:  # fmt: skip
        """Remove ``principal``'s grants of ``actions`` on exactly ``project`` x ``tag``; returns how many there
        were. Needs ``grant`` covering that project and tag (refused and audited otherwise)."""
        check_principal(grantor)
        check_principal(principal)
        wanted = _check_actions(actions)
        project, tag = _check_scope_name(project, "--project"), _check_scope_name(tag, "--tag")
        self._decide(grantor, "grant", _grant_scope(project, tag, principal), "revoke", None)
        with Session(self.engine) as session, session.begin():
            removed = session.execute(delete(AccessGrant).where(
                AccessGrant.principal == principal, AccessGrant.action.in_(wanted),
                AccessGrant.project == project, AccessGrant.tag == tag,
            )).rowcount  # fmt: skip
        detail = f"{','.join(wanted)} project={project} tag={tag} removed={removed}"
        self.audit.append(AuditEntry(grantor, "grant.revoke", f"principal:{principal}", "allowed", detail=detail))
        return int(removed or 0)

    def close_project(self, by: str, project: str) -> None:
        """Mark ``project`` closed (its grants go at the next access review). Needs ``grant`` on it."""
        check_principal(by)
        _check_scope_name(project, "project")
        self._decide(by, "grant", Scope(project, (), f"project:{project}"), "close-project", None)
        with Session(self.engine) as session, session.begin():
            row = session.get(Project, project)
            if row is None:
                raise AccessError(f"project {project!r} is not in the catalog")
            row.status, row.closed_at, row.closed_by = "closed", utcnow(), by
        self.audit.append(AuditEntry(by, "grant.close-project", f"project:{project}", "allowed"))

    def review(self, *, unused_days: float, now: datetime.datetime | None = None,
               by: str = REVIEWER) -> list[Revocation]:  # fmt: skip
        """Revoke grants unused for ``unused_days`` and every grant on a closed project; one audit record each.

        The last ``grant`` on everything (``*`` x ``*``) is kept, reported with ``kept=True``: an unused
        administrator is flagged, not locked out. Returns what was revoked or kept, oldest activity first.
        """
        if unused_days <= 0:
            raise AccessError("unused days must be more than 0")
        now = now or utcnow()
        cutoff = now - datetime.timedelta(days=unused_days)
        with Session(self.engine) as session, session.begin():
            closed = set(session.scalars(select(Project.name).where(Project.status == "closed")))
            rows = list(session.scalars(select(AccessGrant)))
            found: list[tuple[AccessGrant, str]] = []
            for g in rows:
                if g.project in closed:
                    found.append((g, "project closed"))
                elif (g.last_used_at or g.granted_at) < cutoff:
                    found.append((g, f"unused for {unused_days:g} days"))
            admins = [g for g in rows if (g.action, g.project, g.tag) == ("grant", ANY, ANY)]
            kept: list[AccessGrant] = []
            if admins and all(any(g is a for g, _ in found) for a in admins):
                kept = [max(admins, key=lambda g: g.last_used_at or g.granted_at)]
            out = [Revocation(_row(g), reason, kept=any(g is k for k in kept)) for g, reason in found]
            revoke_ids = [g.id for g, _ in found if not any(g is k for k in kept)]
            if revoke_ids:
                session.execute(delete(AccessGrant).where(AccessGrant.id.in_(revoke_ids)))
        self.audit.append_many([
            AuditEntry(by, "grant.review-revoke" if not r.kept else "grant.review-keep",
                       f"principal:{r.grant.principal}", "allowed",
                       detail=f"{r.grant.describe()} reason={r.reason.replace(' ', '-')}")
            for r in out
        ])  # fmt: skip
        return sorted(out, key=lambda r: (r.grant.last_activity, r.grant.principal, r.grant.action))
