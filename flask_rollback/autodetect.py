"""Autogenerate split by app: one Alembic run, one new migration per changed app.

Alembic compares the whole metadata at once; the ``process_revision_directives`` hook then
replaces its single script with one script per app (``head="APP@head"``, the app's folder),
adding ``depends_on`` for every foreign key into another app's table, which Alembic omits, and
for every table it changes that another app's migration created (an adopted Flask-Migrate
history created every table in one app), so a fresh database runs that creation first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alembic.autogenerate import render_python_code
from alembic.operations import ops
from alembic.util import rev_id

from .errors import RollbackError
from .graph import Migration, MigrationGraph
from .questioner import OneOffDefaultsRemoval, Questioner, RenameTableOp, answer_questions

NUMBER_RE = re.compile(r"^(\d{4})_")


@dataclass
class NewMigration:
    """A migration makemigrations wrote (or would write, with --dry-run/--check)."""

    app: str
    revision: str
    message: str
    depends_on: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    code: str = ""
    path: Path | None = None
    #: The app's migrations ship with an installed package: its changes are reported, never
    #: written (the package's next release has to bring the migration).
    read_only: bool = False


class AppSplitter:
    """The ``process_revision_directives`` hook that splits autogenerate output by app."""

    def __init__(
        self,
        graph: MigrationGraph,
        only: Sequence[str],
        message: str | None,
        write: bool,
        revision_id: str | None = None,
        *,
        questioner: Questioner,
    ) -> None:
        self.graph = graph
        self.registry = graph.registry
        self.only = list(only)
        self.message = message
        self.write = write
        #: A revision id the caller chose (``--rev-id``): it names one migration, so one app.
        self.revision_id = revision_id
        #: Asks what autogenerate cannot know (renames, values for existing rows): questioner.py.
        self.questioner = questioner
        self.planned: list[NewMigration] = []
        self._sources: dict[str, str] = {}

    def __call__(self, context, revision, directives: list[ops.MigrationScript]) -> None:  # type: ignore[no-untyped-def]
        script = directives[0]
        answer_questions(script.upgrade_ops, self.questioner, context, self._asked_app)
        by_app: dict[str, list[ops.MigrateOperation]] = {}
        for op in script.upgrade_ops.ops:
            by_app.setdefault(self._app_of(op), []).append(op)
        if self.only:
            by_app = {label: found for label, found in by_app.items() if label in self.only}
        shipped = [label for label in by_app if label in self.registry and self.registry.get(label).read_only]
        for label in shipped:
            operations = [_describe(op) for op in by_app.pop(label)]
            self.planned.append(NewMigration(label, "", "", operations=operations, read_only=True))
        if self.revision_id and len(by_app) > 1:
            raise RollbackError(
                f"--rev-id names one migration, but {len(by_app)} apps changed "
                f"({', '.join(by_app)}); choose one app ('flask db migrate --app APP', or "
                "head='APP@head' from Python)"
            )
        new_ids = {label: self.revision_id or rev_id() for label in by_app}
        scripts = []
        for label in self._dependency_order(by_app, new_ids):
            upgrade = ops.UpgradeOps(ops=by_app[label])
            depends = sorted(self._depends_on(label, by_app[label], new_ids))
            existing = self.graph.of_app(label)
            app = self.registry.get(label)
            message = self.message or self._name(by_app[label], first=not existing)
            scripts.append(
                ops.MigrationScript(
                    new_ids[label],
                    upgrade,
                    upgrade.reverse(),
                    message=message,
                    imports=script.imports,
                    head=f"{label}@head" if existing else "base",
                    branch_label=None if existing else label,
                    version_path=str(app.directory),
                    depends_on=depends or None,
                )
            )
            self.planned.append(
                NewMigration(
                    app=label,
                    revision=new_ids[label],
                    message=message,
                    depends_on=depends,
                    operations=[_describe(op) for op in by_app[label]],
                    code=render_python_code(upgrade),
                )
            )
        directives[:] = scripts if self.write else []

    def _app_of(self, op: ops.MigrateOperation) -> str:
        table = getattr(op, "table_name", None)
        if table is None:
            return self.registry.default_label
        return self.registry.app_of_table(table) or self._creator_of(table)

    def _asked_app(self, table: str) -> str | None:
        """The app whose new migration gets ``table``'s changes; None when none is written for
        it (an app not chosen, or read-only), so nothing is asked about it."""
        label = self.registry.app_of_table(table) or self._creator_of(table)
        if (self.only and label not in self.only) or (label in self.registry and self.registry.get(label).read_only):
            return None
        return label

    def _creator_of(self, table: str) -> str:
        """A dropped table's app: the app whose migrations created it."""
        creator = self._creating_migration(table)
        return creator.app if creator else self.registry.default_label

    def _creating_migration(self, table: str) -> Migration | None:
        """The latest existing migration whose code creates ``table``."""
        pattern = re.compile(rf"create_table\(\s*['\"]{re.escape(table)}['\"]")
        for migration in reversed(list(self.graph.migrations.values())):
            if migration.revision not in self._sources:
                self._sources[migration.revision] = migration.path.read_text(encoding="utf-8")
            if pattern.search(self._sources[migration.revision]):
                return migration
        return None

    def _referenced_apps(self, found: Iterable[ops.MigrateOperation]) -> set[str]:
        return {self.registry.app_of_table(t) or self._creator_of(t) for t in _fk_targets(found)}

    def _depends_on(
        self, label: str, found: list[ops.MigrateOperation], new_ids: dict[str, str]
    ) -> set[str]:
        depends = set()
        targets = _fk_targets(found)
        for table in targets:
            other = self.registry.app_of_table(table) or self._creator_of(table)
            if other == label:
                continue
            if other in new_ids:
                depends.add(new_ids[other])
                continue
            heads = self.graph.app_heads(other)
            if not heads and self._creating_migration(table) is None:
                raise RollbackError(
                    f"app {label!r} has a foreign key into app {other!r}, which has no "
                    f"migration yet; run 'flask db makemigrations {other} {label}'"
                )
            depends.update(heads)
        depends.update(self._created_elsewhere(label, targets | _changed_tables(found)))
        return _without_implied(depends, self.graph)

    def _created_elsewhere(self, label: str, tables: set[str]) -> set[str]:
        """Migrations of other apps that created ``tables`` and that the app's history does not
        already stand on: its new migration must run after them."""
        below = self.graph.closure(self.graph.app_heads(label))
        creators = (self._creating_migration(table) for table in tables)
        return {
            creator.revision for creator in creators
            if creator is not None and creator.app != label and creator.revision not in below
        }

    def _dependency_order(
        self, by_app: dict[str, list[ops.MigrateOperation]], new_ids: dict[str, str]
    ) -> list[str]:
        """Apps whose new migration others depend on come first (Alembic resolves depends_on)."""
        needs = {
            label: (self._referenced_apps(found) - {label}) & set(by_app)
            for label, found in by_app.items()
        }
        order: list[str] = []
        while needs:
            ready = [label for label in self.registry.labels if label in needs and not needs[label] - set(order)]
            if not ready:
                raise RollbackError(
                    "foreign keys form a cycle between apps "
                    f"{', '.join(sorted(needs))}; create one side's constraint in a later migration"
                )
            for label in ready:
                order.append(label)
                del needs[label]
        return order

    @staticmethod
    def _name(found: list[ops.MigrateOperation], first: bool) -> str:
        if first:
            return "initial"
        words = []
        for op in found:
            if isinstance(op, OneOffDefaultsRemoval):
                continue  # the end of the column added before it
            if isinstance(op, ops.CreateTableOp):
                words.append(f"create_{op.table_name}")
            elif isinstance(op, ops.DropTableOp):
                words.append(f"drop_{op.table_name}")
            elif isinstance(op, RenameTableOp):
                words.append(f"rename_{op.table_name}_{op.new_table_name}")
            elif isinstance(op, ops.ModifyTableOps):
                for inner in op.ops:
                    if isinstance(inner, ops.AddColumnOp):
                        words.append(f"add_{op.table_name}_{inner.column.name}")
                    elif isinstance(inner, ops.DropColumnOp):
                        words.append(f"remove_{op.table_name}_{inner.column_name}")
                    elif isinstance(inner, ops.AlterColumnOp) and inner.modify_name:
                        words.append(f"rename_{op.table_name}_{inner.column_name}_{inner.modify_name}")
                    else:
                        words.append(f"alter_{op.table_name}")
            else:
                words.append("auto")
        return "_".join(dict.fromkeys(words))[:40].rstrip("_") or "auto"


def _fk_tables(foreign_keys: Iterable) -> set[str]:  # type: ignore[type-arg]
    return {fk.target_fullname.split(".")[-2] for fk in foreign_keys}


def _fk_targets(found: Iterable[ops.MigrateOperation]) -> set[str]:
    """Tables the operations' new foreign keys point at."""
    tables: set[str] = set()
    for op in found:
        for inner in getattr(op, "ops", [op]):
            if isinstance(inner, ops.CreateTableOp):
                tables.update(_fk_tables(inner.to_table().foreign_keys))
            elif isinstance(inner, ops.AddColumnOp):
                tables.update(_fk_tables(inner.column.foreign_keys))
            elif isinstance(inner, ops.CreateForeignKeyOp):
                tables.add(inner.referent_table)
    return tables


def _changed_tables(found: Iterable[ops.MigrateOperation]) -> set[str]:
    """Existing tables the operations alter, index or drop (not the ones they create)."""
    return {
        table for op in found
        if not isinstance(op, ops.CreateTableOp) and (table := getattr(op, "table_name", None))
    }


def _without_implied(depends: set[str], graph: MigrationGraph) -> set[str]:
    """Drop a dependency another one already stands on (new revisions are kept)."""
    return {
        rev for rev in depends
        if not any(rev != other and rev in graph.closure([other]) for other in depends)
    }


def slugify(text: str) -> str:
    """``Add tags!`` -> ``add_tags``: the name part of a migration file (empty for no words)."""
    return "_".join(re.findall(r"[^\W_]+", text.lower()))[:40].rstrip("_")


def _describe(op: ops.MigrateOperation) -> str:
    if isinstance(op, OneOffDefaultsRemoval):
        return "; ".join(f"{_describe(inner)} (one-off default removed)" for inner in op.ops)
    if isinstance(op, ops.ModifyTableOps):
        return "; ".join(_describe(inner) for inner in op.ops)
    if isinstance(op, RenameTableOp):
        return f"RenameTable {op.table_name} to {op.new_table_name}"
    if isinstance(op, ops.AlterColumnOp) and op.modify_name:
        return f"RenameColumn {op.table_name}.{op.column_name} to {op.modify_name}"
    kind = type(op).__name__.removesuffix("Op")
    target = getattr(op, "table_name", "")
    column = getattr(op, "column_name", None) or getattr(getattr(op, "column", None), "name", None)
    return f"{kind} {target}{'.' + column if column else ''}".strip()


def django_filename(path: Path, message: str) -> Path:
    """``0003_add_tags.py``: the next number in the app's folder, then the message's slug."""
    numbers = [
        int(m.group(1)) for p in path.parent.glob("*.py") if p != path and (m := NUMBER_RE.match(p.name))
    ]
    return path.with_name(f"{max(numbers, default=0) + 1:04d}_{slugify(message) or 'auto'}.py")
