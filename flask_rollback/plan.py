"""Where plans are computed: a target on the command line becomes an ordered list of steps.

Plans are computed from sets (what must be applied, what must be reverted) over the graph, so
the whole effect of a downgrade, including other apps' migrations that depend on the target,
is known and shown before anything runs. Alembic executes the resulting steps.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

from .errors import RollbackError
from .graph import Migration, MigrationGraph
from .wording import plural

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationStep

Kind = Literal["upgrade", "downgrade", "stamp"]
RELATIVE_RE = re.compile(r"^([+-])(\d+)$")


@dataclass(frozen=True)
class Step:
    """One migration applied (``up``) or reverted (``down``); a ``fake`` step is recorded
    (version table, applied log) without running its code (``upgrade --fake-initial``)."""

    migration: Migration
    direction: Literal["up", "down"]
    fake: bool = False

    @property
    def app(self) -> str:
        return self.migration.app

    def reversed(self) -> Step:
        """The same migration the other way (what rolling this step back runs)."""
        return Step(self.migration, "down" if self.direction == "up" else "up")


@dataclass
class Plan:
    """What a command will do, in order; computed before the database is touched."""

    kind: Kind
    target: str
    steps: list[Step]
    heads_before: tuple[str, ...]
    heads_after: tuple[str, ...]
    cascaded: list[str] = field(default_factory=list)
    #: revision -> why this step is in the plan though it was not asked for (a rollback's
    #: migrations applied after the deploy by a plain upgrade, which depend on it).
    notes: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.steps)

    def apps(self) -> list[str]:
        return list(dict.fromkeys(step.app for step in self.steps))

    def by_app(self) -> dict[str, list[Step]]:
        grouped: dict[str, list[Step]] = {}
        for step in self.steps:
            grouped.setdefault(step.app, []).append(step)
        return grouped

    def alembic_steps(self, graph: MigrationGraph) -> list[MigrationStep]:
        from alembic.runtime.migration import MigrationStep

        revision_map = graph.script.revision_map
        steps: list[MigrationStep] = [
            MigrationStep.upgrade_from_script(revision_map, script)
            if step.direction == "up"
            else MigrationStep.downgrade_from_script(revision_map, script)
            for step, script in zip(
                self.steps, graph.scripts(s.migration.revision for s in self.steps)
            )
        ]
        for planned, step in zip(self.steps, steps):
            if planned.fake:
                step.migration_fn = _recorded_only
        return steps


def _recorded_only(**_kw: object) -> None:
    """What a fake step runs: nothing; Alembic still moves the version table."""


class Planner:
    """Turns targets into plans for one graph and one database state."""

    def __init__(
        self,
        graph: MigrationGraph,
        stored_heads: Sequence[str],
        logged: Collection[str] = (),
        names: Mapping[str, str] | None = None,
    ) -> None:
        unknown = graph.unknown(stored_heads)
        if unknown:
            # Never advise purging the version table: that forgets migrations that really ran, and the
            # next upgrade would run the older code's migrations over their schema.
            found = ", ".join(
                f"{names[rev]} ({rev})" if names and rev in names else rev for rev in unknown
            )
            these, them, files = ("this migration", "it", "file") if len(unknown) == 1 else (
                "these migrations", "them", "files")
            raise RollbackError(
                f"the database was migrated by newer code than this: it is at {found}, which no "
                f"migration file here provides; deploy the code that has {these} (the release "
                f"that applied {them}), or restore the missing {files}"
            )
        self.graph = graph
        self.stored_heads = tuple(stored_heads)
        #: The applied revisions. A database at every head (the usual case) has every migration
        #: applied: the graph's own keys then, not a walk making a set of 10,000 revisions.
        self.applied: AbstractSet[str] = (
            graph.migrations.keys() if set(stored_heads) == set(graph.heads_of_everything)
            else graph.closure(stored_heads)
        )
        #: Revisions in the order the applied log last applied them, oldest first.
        self._logged = logged

    @cached_property
    def recent(self) -> list[str]:
        """Applied revisions, most recently applied first: as the applied log has them, then
        those applied without a log row (an adopted history, a stamp), older than anything
        logged, the later in the graph's order the more recent. Made when a plan counts steps
        back (``downgrade -N``): a history of 10,000 migrations makes it 10,000 long."""
        logged = list(dict.fromkeys(  # a squash was applied when its originals were
            applied for applied in (self.graph.replaced.get(rev, rev) for rev in reversed(list(self._logged)))
            if applied in self.applied
        ))
        seen = set(logged)
        unlogged = [rev for rev in reversed(self.graph.migrations) if rev in self.applied and rev not in seen]
        return logged + unlogged

    # -- upgrade -------------------------------------------------------------------------------

    def upgrade(self, words: Sequence[str] = ()) -> Plan:
        graph = self.graph
        target = " ".join(words) or "heads"
        limit: int | None = None
        if not words or words[0] in ("head", "heads"):
            goal = graph.heads()
            if len(words) > 1:
                raise RollbackError(f"unexpected {words[1]!r} after {words[0]!r}")
        elif len(words) == 1 and RELATIVE_RE.match(words[0]):
            sign, count = RELATIVE_RE.match(words[0]).groups()  # type: ignore[union-attr]
            if sign == "-":
                raise RollbackError(f"{target!r} goes down; use 'flask db downgrade {target}'")
            goal, limit = graph.heads(), int(count)
        else:
            app, rest = self._split(words)
            if rest is None:
                goal = graph.app_heads(app)
            elif rest in ("zero", "base"):
                if graph.position(app, self.applied):
                    raise RollbackError(
                        f"{target!r} goes down; use 'flask db downgrade {app} zero'"
                    )
                goal = []
            elif RELATIVE_RE.match(rest):
                sign, count = RELATIVE_RE.match(rest).groups()  # type: ignore[union-attr]
                if sign == "-":
                    raise RollbackError(f"{target!r} goes down; use 'flask db downgrade {target}'")
                pending = [m.revision for m in graph.of_app(app) if m.revision not in self.applied]
                if int(count) > len(pending):
                    raise RollbackError(
                        f"app {app!r} has only {plural(len(pending), 'pending migration')}, not {count}"
                    )
                goal = pending[: int(count)]
            else:
                migration = graph.find(rest, app)
                self._check_not_below(migration, target)
                goal = [migration.revision]
        wanted = graph.closure(goal) - self.applied
        order = [rev for rev in graph.migrations if rev in wanted]
        if limit is not None:
            order = order[:limit]
        return self._plan("upgrade", target, order, "up")

    def _check_not_below(self, migration: Migration, target: str) -> None:
        if migration.revision not in self.applied:
            return
        above = [
            rev for rev in self.graph.position(migration.app, self.applied)
            if rev != migration.revision
        ]
        if above:
            raise RollbackError(
                f"{target!r} is below app {migration.app!r}'s current revision; "
                f"use 'flask db downgrade {target}'"
            )

    # -- downgrade -----------------------------------------------------------------------------

    def downgrade(self, words: Sequence[str] = (), cascade: bool = False) -> Plan:
        graph = self.graph
        target = " ".join(words) or "-1"
        if not words or RELATIVE_RE.match(words[0]):
            sign, count = RELATIVE_RE.match(words[0] if words else "-1").groups()  # type: ignore[union-attr]
            if sign == "+":
                raise RollbackError(f"{target!r} goes up; use 'flask db upgrade {target}'")
            roots = self._most_recent(int(count))
            aimed = {graph.migrations[rev].app for rev in roots}
        elif words[0] == "base":
            roots, aimed = set(self.applied), set(graph.registry.labels)
        elif words[0] in ("head", "heads"):
            raise RollbackError(f"{target!r} goes up; use 'flask db upgrade'")
        else:
            app, rest = self._split(words)
            applied_in_app = [m.revision for m in graph.of_app(app) if m.revision in self.applied]
            aimed = {app}
            if rest is None or RELATIVE_RE.match(rest):
                sign, count = RELATIVE_RE.match(rest or "-1").groups()  # type: ignore[union-attr]
                if sign == "+":
                    raise RollbackError(f"{target!r} goes up; use 'flask db upgrade {target}'")
                if int(count) > len(applied_in_app):
                    raise RollbackError(
                        f"app {app!r} has {plural(len(applied_in_app), 'applied migration')}; "
                        f"cannot go down {count}"
                    )
                roots = set(applied_in_app[len(applied_in_app) - int(count) :])
            elif rest in ("zero", "base"):
                roots = set(applied_in_app)
            else:
                migration = graph.find(rest, app)
                if migration.revision not in self.applied:
                    raise RollbackError(
                        f"{migration.label} is not applied; use 'flask db upgrade {target}'"
                    )
                roots = {
                    rev for rev in applied_in_app
                    if rev != migration.revision and migration.revision in graph.closure([rev])
                }
        removed = self.graph.dependents(roots) & self.applied
        order = [rev for rev in reversed(graph.migrations) if rev in removed]
        plan = self._plan("downgrade", target, order, "down")
        plan.cascaded = [s.migration.label for s in plan.steps if s.app not in aimed]
        if plan.cascaded and not cascade:
            raise RollbackError(
                f"downgrading {target} would also revert migrations of other apps that depend "
                f"on it: {', '.join(plan.cascaded)}; re-run with --cascade to revert them too"
            )
        return plan

    def revert_to(self, stored_heads: Sequence[str], target: str) -> Plan:
        """Revert everything applied since the database stood at ``stored_heads`` (a deploy's
        "before"), in dependency order."""
        keep = self.graph.closure(stored_heads)
        removed = self.applied - keep
        order = [rev for rev in reversed(self.graph.migrations) if rev in removed]
        return self._plan("downgrade", target, order, "down")

    def revert(self, revisions: Sequence[str], target: str) -> Plan:
        """Revert ``revisions`` (those still applied) and every applied migration that stands
        on them, in dependency order; migrations that do not are left alone."""
        removed = self.graph.dependents(set(revisions) & self.applied) & self.applied
        order = [rev for rev in reversed(self.graph.migrations) if rev in removed]
        return self._plan("downgrade", target, order, "down")

    def _most_recent(self, count: int) -> set[str]:
        if count > len(self.recent):
            if not self.recent:
                raise RollbackError(
                    "no migration is applied, so there is nothing to revert"
                )
            raise RollbackError(
                f"only {plural(len(self.recent), 'migration')} {'is' if len(self.recent) == 1 else 'are'} "
                f"applied; cannot go down {count}"
            )
        return set(self.recent[:count])

    # -- stamp ---------------------------------------------------------------------------------

    def stamp(self, words: Sequence[str]) -> Plan:
        """Record a position without running migrations (Django's ``--fake``)."""
        graph = self.graph
        applied = set(self.applied)
        target = " ".join(words)
        if not words:
            raise RollbackError("stamp needs a target, e.g. 'flask db stamp heads'")
        if words[0] in ("head", "heads"):
            new = set(graph.migrations)
        elif words[0] == "base":
            new = set()
        elif len(words) == 1 and RELATIVE_RE.match(words[0]):
            sign, count = RELATIVE_RE.match(words[0]).groups()  # type: ignore[union-attr]
            if sign == "+":
                pending = [rev for rev in graph.migrations if rev not in applied]
                new = applied | graph.closure(pending[: int(count)])
            else:
                new = applied - self.graph.dependents(self._most_recent(int(count)))
        else:
            app, rest = self._split(words)
            mine = {m.revision for m in graph.of_app(app)}
            if rest is None:
                new = applied | graph.closure(graph.app_heads(app))
            elif rest in ("zero", "base"):
                new = applied - self.graph.dependents(mine & applied)
            elif RELATIVE_RE.match(rest):
                sign, count = RELATIVE_RE.match(rest).groups()  # type: ignore[union-attr]
                ordered = [m.revision for m in graph.of_app(app)]
                if sign == "+":
                    pending = [rev for rev in ordered if rev not in applied]
                    if int(count) > len(pending):
                        raise RollbackError(
                            f"app {app!r} has only {plural(len(pending), 'pending migration')}, not {count}"
                        )
                    new = applied | graph.closure(pending[: int(count)])
                else:
                    done = [rev for rev in ordered if rev in applied]
                    if int(count) > len(done):
                        raise RollbackError(
                            f"app {app!r} has {plural(len(done), 'applied migration')}; "
                            f"cannot go down {count}"
                        )
                    new = applied - self.graph.dependents(set(done[len(done) - int(count) :]))
            else:
                migration = graph.find(rest, app)
                above = {
                    rev for rev in mine
                    if rev != migration.revision and migration.revision in graph.closure([rev])
                }
                new = (applied - self.graph.dependents(above)) | graph.closure([migration.revision])
        before = applied
        order = [rev for rev in reversed(graph.migrations) if rev in before - new]
        order += [rev for rev in graph.migrations if rev in new - before]
        steps = [
            Step(graph.migrations[rev], "up" if rev in new else "down") for rev in order
        ]
        return Plan("stamp", target, steps, self.stored_heads, graph.stored_heads(new))

    # -- shared --------------------------------------------------------------------------------

    def _split(self, words: Sequence[str]) -> tuple[str, str | None]:
        """``APP``, ``APP REV``, ``APP@REV``, ``APP.REV`` or a bare revision → (app, rest)."""
        if len(words) > 2:
            raise RollbackError(f"too many target words: {' '.join(words)!r}")
        first = words[0]
        app, rest = self.graph.split_reference(first)
        if app is not None:
            if len(words) > 1:
                raise RollbackError(f"unexpected {words[1]!r} after {first!r}")
            if not rest:
                raise RollbackError(f"bad target {first!r}: expected APP@REV, APP@+N or APP@base")
            self.graph.registry.get(app)
            return app, None if rest == "head" else rest
        if len(words) == 2:
            self.graph.registry.get(first)
            return first, words[1]
        if first in self.graph.registry:
            return first, None
        migration = self.graph.find(first)
        return migration.app, migration.revision

    def _plan(self, kind: Kind, target: str, order: list[str], direction: str) -> Plan:
        graph = self.graph
        steps = [Step(graph.migrations[rev], direction) for rev in order]  # type: ignore[arg-type]
        applied = set(self.applied)
        applied = applied | set(order) if direction == "up" else applied - set(order)
        return Plan(kind, target, steps, self.stored_heads, graph.stored_heads(applied))
