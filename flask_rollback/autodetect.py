"""Autogenerate split by app: one Alembic run, new migrations per changed app that always apply.

Alembic compares the whole metadata at once; the ``process_revision_directives`` hook then
replaces its single script with one script per changed app (in that app's folder) and:

* **orders** the work so that a table exists before a foreign key points at it. Foreign keys that
  form a cycle are broken Django's way: the tables are created without the cyclic foreign key,
  which ``create_foreign_key`` adds once both exist. Within one app's migration that happens at
  its end; across apps (teams in one app, users in another, each pointing at the other), one
  app's migration creates its table without the foreign key and a second migration of that app
  adds it, depending on the other app's migration;
* adds ``depends_on`` for every foreign key into another app's table (Alembic adds none) and for
  every table it changes that another app's migration created (an adopted Flask-Migrate history
  created every table in one app). It names **the migration that last created or changed the
  referenced table's columns** (created the table, or later added, altered or made unique the
  referenced column), not the other app's head: reverting a later migration of the other app
  then does not cascade into this one;
* gives every new migration a **revision id derived from its app, parent, dependencies, name and
  code**: the same models and history always give the same id, so ``--dry-run`` shows the id
  (and the file) that the real run writes.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic.autogenerate import render_python_code
from alembic.operations import ops

from .errors import RollbackError
from .files import docstring_text
from .graph import Migration, MigrationGraph
from .questioner import OneOffDefaultsRemoval, Questioner, RenameTableOp, answer_questions

NUMBER_RE = re.compile(r"^(\d{4})_")
#: ``0002_squashed_0004_add_tags.py`` stands for 0002..0004: the next file is numbered after 0004.
SQUASHED_NUMBER_RE = re.compile(r"^\d{4}_squashed_(\d{4})_")
#: The start of SQLAlchemy's warning when it sorts tables whose foreign keys form a cycle.
SORT_CYCLE_WARNING = "Cannot correctly sort tables"
#: PostgreSQL's longest identifier: a foreign key name made up here is cut to it.
MAX_NAME_LENGTH = 63


@dataclass
class NewMigration:
    """A migration makemigrations wrote (or would write, with --dry-run/--check)."""

    app: str
    revision: str
    message: str
    depends_on: list[str] = field(default_factory=list)
    #: ``depends_on`` as the output names migrations (``accounts.0002_create_groups``).
    depends_on_names: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    #: The whole file, exactly as it is (or would be) written.
    code: str = ""
    path: Path | None = None
    #: The app's migrations ship with an installed package: its changes are reported, never
    #: written (the package's next release has to bring the migration).
    read_only: bool = False


@contextmanager
def cycles_expected() -> Iterator[None]:
    """Autogenerate sorts the models' tables with ``MetaData.sorted_tables``, and SQLAlchemy
    warns on every command about each foreign key cycle (teams <-> users). The cycle is legal
    and makemigrations breaks it itself, so that one warning is silenced here; every other
    warning, the user's code's included, still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=SORT_CYCLE_WARNING, category=sa.exc.SAWarning)
        yield


def revision_id(app: str, parent: str | None, depends_on: Iterable[str], message: str, code: str) -> str:
    """12 hex digits (Alembic's format) derived from what makes the migration: one state, one
    id, so a dry run names the revision the real run writes, and two developers who generate
    the same migration get the same file."""
    text = "\n".join([app, parent or "", *sorted(depends_on), message, code])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(eq=False)
class _Reference:
    """A foreign key new operations create: its table, what it points at, and where it sits
    (inside a CreateTableOp, or as a CreateForeignKeyOp inside a ModifyTableOps)."""

    table: str
    target: str
    columns: tuple[str, ...]
    holder: ops.CreateTableOp | ops.ModifyTableOps
    constraint: sa.ForeignKeyConstraint | ops.CreateForeignKeyOp

    def detach(self) -> ops.CreateForeignKeyOp:
        """Take the foreign key out of its operation; returns it as a ``create_foreign_key``."""
        if isinstance(self.holder, ops.CreateTableOp):
            self.holder.columns = [c for c in self.holder.columns if c is not self.constraint]
            assert isinstance(self.constraint, sa.ForeignKeyConstraint)
            added = ops.CreateForeignKeyOp.from_constraint(self.constraint)
            if added.constraint_name is None:  # its downgrade must name it to drop it
                added.constraint_name = _foreign_key_name(self.table, added.local_cols)
            return added
        self.holder.ops[:] = [op for op in self.holder.ops if op is not self.constraint]
        assert isinstance(self.constraint, ops.CreateForeignKeyOp)
        return self.constraint


def _foreign_key_name(table: str, columns: Sequence[str]) -> str:
    """PostgreSQL's own name for a foreign key it creates inline (``teams_owner_id_fkey``)."""
    return f"{table}_{'_'.join(columns)}"[: MAX_NAME_LENGTH - len("_fkey")] + "_fkey"


def _references(found: Iterable[ops.MigrateOperation]) -> list[_Reference]:
    """Every foreign key the operations create. A new column's foreign key comes from
    autogenerate as a separate CreateForeignKeyOp, so AddColumnOp carries none here."""
    references = []
    for op in found:
        if isinstance(op, ops.CreateTableOp):
            for constraint in op.columns:
                if isinstance(constraint, sa.ForeignKeyConstraint):
                    target, columns = _referred(constraint)
                    references.append(_Reference(op.table_name, target, columns, op, constraint))
        elif isinstance(op, ops.ModifyTableOps):
            for inner in op.ops:
                if isinstance(inner, ops.CreateForeignKeyOp):
                    references.append(_Reference(
                        op.table_name, inner.referent_table, tuple(inner.remote_cols), op, inner
                    ))
    return references


def _referred(constraint: sa.ForeignKeyConstraint) -> tuple[str, tuple[str, ...]]:
    """``users``, ``("id",)``, read from the ``[schema.]table.column`` spellings (no lookup in
    the metadata, so a target outside it is fine)."""
    parts = [element.target_fullname.split(".") for element in constraint.elements]
    return parts[0][-2], tuple(part[-1] for part in parts)


Node = TypeVar("Node")


def _order_breaking_cycles(
    nodes: list[Node], references: dict[Node, list[_Reference]], node_of: Callable[[_Reference], Node | None]
) -> tuple[list[Node], dict[Node, list[_Reference]]]:
    """``nodes`` in an order where every reference points at a node placed before it. When a
    cycle leaves no node ready, the first node with the fewest references into the rest is
    placed and those references are returned, by node, to be added later (Django breaks cycles
    the same way). A reference to its own node (a self-referencing table) never needs that."""
    remaining = list(nodes)
    order: list[Node] = []
    deferred: dict[Node, list[_Reference]] = {}

    def waiting(node: Node) -> list[_Reference]:
        return [
            reference for reference in references.get(node, [])
            if (other := node_of(reference)) is not None and other != node and other in remaining
        ]

    while remaining:
        node = next((n for n in remaining if not waiting(n)), None)
        if node is None:
            node = min(remaining, key=lambda n: len(waiting(n)))
            deferred[node] = waiting(node)
        order.append(node)
        remaining.remove(node)
    return order, deferred


def _adding(references: list[_Reference]) -> list[ops.MigrateOperation]:
    """Detached foreign keys as ``create_foreign_key`` operations, one ModifyTableOps per table
    (with SQLite's batch mode: one table rebuild for all of a table's keys)."""
    by_table: dict[str, ops.ModifyTableOps] = {}
    for reference in references:
        added = reference.detach()
        by_table.setdefault(
            reference.table, ops.ModifyTableOps(reference.table, [], schema=added.kw.get("source_schema"))
        ).ops.append(added)
    return list(by_table.values())


def _order_within(found: list[ops.MigrateOperation]) -> list[ops.MigrateOperation]:
    """One migration's operations with every created table after the tables it references; a
    cycle among them gets its foreign key added by ``create_foreign_key`` at the end.

    Autogenerate puts new tables first, each followed by its own ModifyTableOps (its indexes);
    they move together."""
    units: dict[str, list[ops.MigrateOperation]] = {}
    rest: list[ops.MigrateOperation] = []
    last: str | None = None
    for op in found:
        if isinstance(op, ops.CreateTableOp):
            last = op.table_name
            units[last] = [op]
        elif isinstance(op, ops.ModifyTableOps) and op.table_name == last:
            units[last].append(op)
        else:
            last = None
            rest.append(op)
    references = {table: _references(unit[:1]) for table, unit in units.items()}
    order, deferred = _order_breaking_cycles(
        list(units), references, lambda reference: reference.target if reference.target in units else None
    )
    cyclic = [reference for table in order for reference in deferred.get(table, [])]
    return [op for table in order for op in units[table]] + rest + _adding(cyclic)


@dataclass(eq=False)
class _Draft:
    """A new migration being planned: its app, operations and the one of this run it follows."""

    app: str
    ops: list[ops.MigrateOperation]
    follows: _Draft | None = None
    message: str = ""
    revision: str = ""
    depends_on: list[str] = field(default_factory=list)


class AppSplitter:
    """The ``process_revision_directives`` hook that splits autogenerate output by app."""

    def __init__(
        self,
        graph: MigrationGraph,
        only: Sequence[str],
        message: str | None,
        staging: dict[str, Path],
        dialect: str,
        revision_id: str | None = None,
        *,
        questioner: Questioner,
    ) -> None:
        self.graph = graph
        self.registry = graph.registry
        self.only = list(only)
        self.message = message
        #: Where Alembic writes each app's new files (the caller writes them into the app's
        #: folder under their Django names).
        self.staging = staging
        #: A revision id the caller chose (``--rev-id``): it names one migration, so one app.
        self.revision_id = revision_id
        #: Asks what autogenerate cannot know (renames, values for existing rows): questioner.py.
        self.questioner = questioner
        self.planned: list[NewMigration] = []
        self.creators = Creators(graph, dialect)
        #: Tables, and columns of existing tables, that this run's new migrations create: by app.
        self._new_tables: dict[str, str] = {}
        self._new_columns: dict[tuple[str, str], str] = {}

    def __call__(self, context, revision, directives: list[ops.MigrationScript]) -> None:  # type: ignore[no-untyped-def]
        script = directives[0]
        upgrade_ops = script.upgrade_ops_list[0]
        answer_questions(upgrade_ops, self.questioner, context, self._asked_app)
        operations = upgrade_ops.ops
        by_app: dict[str, list[ops.MigrateOperation]] = {}
        for op in operations:
            by_app.setdefault(self._app_of(op), []).append(op)
        if self.only:
            by_app = {label: found for label, found in by_app.items() if label in self.only}
        shipped = [label for label in by_app if label in self.registry and self.registry.get(label).read_only]
        for label in shipped:
            described = [_describe(op) for op in by_app.pop(label)]
            self.planned.append(NewMigration(label, "", "", operations=described, read_only=True))
        drafts = self._drafts(by_app)
        if self.revision_id and len(drafts) > 1:
            raise RollbackError(
                f"--rev-id names one migration, but {len(drafts)} would be written "
                f"({', '.join(draft.app for draft in drafts)}); choose one app ('flask db migrate "
                "--app APP', or head='APP@head' from Python)"
            )
        directives[:] = [self._script(draft, script.imports) for draft in drafts]

    # -- which app, in which order ----------------------------------------------------------------

    def _app_of(self, op: ops.MigrateOperation) -> str:
        table = getattr(op, "table_name", None)
        if table is None:
            return self.registry.default_label
        return self.registry.app_of_table(table) or self._creator_app(table)

    def _asked_app(self, table: str) -> str | None:
        """The app whose new migration gets ``table``'s changes; None when none is written for
        it (an app not chosen, or read-only), so nothing is asked about it."""
        label = self.registry.app_of_table(table) or self._creator_app(table)
        if (self.only and label not in self.only) or (label in self.registry and self.registry.get(label).read_only):
            return None
        return label

    def _creator_app(self, table: str) -> str:
        """A dropped table's app: the app whose migration created it."""
        creator = self.creators.of(table)
        return creator.app if creator else self.registry.default_label

    def _drafts(self, by_app: dict[str, list[ops.MigrateOperation]]) -> list[_Draft]:
        """One migration per changed app, ordered so each runs after what it references; an
        app whose foreign keys close a cycle between apps gets a second migration adding them."""
        self._new_tables = {
            op.table_name: label for label, found in by_app.items() for op in found
            if isinstance(op, ops.CreateTableOp)
        }
        self._new_columns = {
            (op.table_name, inner.column.name): label
            for label, found in by_app.items() for op in found if isinstance(op, ops.ModifyTableOps)
            for inner in op.ops if isinstance(inner, ops.AddColumnOp)
        }
        labels = [label for label in self.registry.labels if label in by_app]
        labels += [label for label in by_app if label not in labels]
        order, deferred = _order_breaking_cycles(
            labels, {label: _references(by_app[label]) for label in labels}, self._new_creator
        )
        primaries = {label: _Draft(label, _order_within(by_app[label])) for label in order}
        drafts = list(primaries.values()) + [
            _Draft(label, _adding(deferred[label]), follows=primaries[label])
            for label in order if label in deferred
        ]
        for draft in drafts:
            # Detaching deferred keys may have emptied a ModifyTableOps: it would render as "pass".
            draft.ops = [op for op in draft.ops if not (isinstance(op, ops.ModifyTableOps) and not op.ops)]
            self._complete(draft, primaries)
        return drafts

    def _new_creator(self, reference: _Reference) -> str | None:
        """The app whose new migration creates the referenced table or one of its columns."""
        creator = self._new_tables.get(reference.target)
        if creator is None:
            creator = next(
                (self._new_columns[key] for column in reference.columns
                 if (key := (reference.target, column)) in self._new_columns),
                None,
            )
        return creator

    # -- what each new migration depends on, its name and id -----------------------------------

    def _complete(self, draft: _Draft, primaries: dict[str, _Draft]) -> None:
        """Its name, dependencies and revision id (the drafts it depends on come first)."""
        label = draft.app
        existing = self.graph.app_heads(label)
        first = not existing and draft.follows is None
        draft.message = self.message or self._name(draft.ops, first=first)
        depends: set[str] = set()
        for reference in _references(draft.ops):
            creator = self._new_creator(reference)
            if creator is not None:
                if creator != label:
                    depends.add(primaries[creator].revision)
                continue
            depends |= self._existing_creator(label, reference.target, reference.columns)
        # A table other apps' migrations created or changed (an adopted history): the latest of
        # them, so a fresh database has the table as they left it (a SQLite rebuild copies every
        # column); only when the app's own history does not already stand on it.
        below = self.graph.closure(existing)
        for table in _changed_tables(draft.ops) - set(self._new_tables):
            touched_by = self.creators.last_touching(table, other_than=label)
            if touched_by is not None and touched_by.revision not in below:
                depends.add(touched_by.revision)
        draft.depends_on = sorted(_without_implied(depends, self.graph))
        parent = draft.follows.revision if draft.follows else (existing[0] if existing else None)
        draft.revision = self.revision_id or revision_id(
            label, parent, draft.depends_on, draft.message, render_python_code(ops.UpgradeOps(ops=draft.ops))
        )

    def _existing_creator(self, label: str, table: str, columns: tuple[str, ...]) -> set[str]:
        """The existing migration that created ``table`` (or, later, one of ``columns``) when it
        belongs to another app; that app's heads when no migration visibly created it (raw SQL
        in Python code, say)."""
        creator = self.creators.of(table, columns)
        if creator is not None:
            return set() if creator.app == label else {creator.revision}
        owner = self.registry.app_of_table(table) or self.registry.default_label
        if owner == label:
            return set()
        heads = self.graph.app_heads(owner)
        if not heads:
            raise RollbackError(
                f"app {label!r} has a foreign key into app {owner!r}, which has no "
                f"migration yet; run 'flask db makemigrations {owner} {label}'"
            )
        return set(heads)

    def _script(self, draft: _Draft, imports: set[str]) -> ops.MigrationScript:
        existing = self.graph.app_heads(draft.app)
        parent = draft.follows.revision if draft.follows else (existing[0] if existing else None)
        upgrade = ops.UpgradeOps(ops=draft.ops)
        self.planned.append(
            NewMigration(
                app=draft.app,
                revision=draft.revision,
                message=draft.message,
                depends_on=draft.depends_on,
                operations=[_describe(op) for op in draft.ops],
            )
        )
        return ops.MigrationScript(
            draft.revision,
            upgrade,
            upgrade.reverse(),
            message=docstring_text(draft.message),
            imports=imports,
            head=parent or "base",
            branch_label=None if parent else draft.app,
            version_path=str(self.staging[draft.app]),
            depends_on=draft.depends_on or None,
        )

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
                    elif isinstance(inner, ops.CreateForeignKeyOp):
                        words.append(f"add_fk_{op.table_name}_{'_'.join(inner.local_cols)}")
                    else:
                        words.append(f"alter_{op.table_name}")
            else:
                words.append("auto")
        return "_".join(dict.fromkeys(words))[:40].rstrip("_") or "auto"


#: Operations on existing columns that a foreign key into them may need first: a new type, a
#: unique constraint or index (PostgreSQL refuses a key into columns without one), a primary key.
_COLUMN_CHANGES = (
    ops.AlterColumnOp, ops.CreateUniqueConstraintOp, ops.CreateIndexOp, ops.CreatePrimaryKeyOp,
)


class Creators:
    """Which existing migration last created or changed a table or a column, read from what each
    migration records (``analysis.operations``: ``create_table``, ``add_column``, renames, raw
    ``CREATE TABLE``, ``alter_column``, unique constraints and indexes), only for the files whose
    text names the table at all."""

    def __init__(self, graph: MigrationGraph, dialect: str) -> None:
        self.graph = graph
        self.dialect = dialect
        self._texts: dict[str, str] = {}
        self._provided: dict[str, set[tuple[str, str | None]]] = {}

    def of(self, table: str, columns: Iterable[str] = ()) -> Migration | None:
        """The latest migration (in the global order) that created ``table`` or, after that,
        added or changed one of ``columns``; None when none did visibly. Later changes to other
        columns do not count: a key into ``groups.id`` needs nothing from the migration that
        adds ``groups.title``."""
        wanted = {(table, None), *((table, column) for column in columns)}
        for migration in reversed(list(self.graph.migrations.values())):
            if table in self._text(migration) and wanted & self._provides(migration):
                return migration
        return None

    def last_touching(self, table: str, other_than: str) -> Migration | None:
        """The latest migration of an app other than ``other_than`` that created ``table`` or
        added, renamed or changed one of its columns."""
        for migration in reversed(list(self.graph.migrations.values())):
            if migration.app != other_than and table in self._text(migration) and any(
                provided == table for provided, _column in self._provides(migration)
            ):
                return migration
        return None

    def _text(self, migration: Migration) -> str:
        if migration.revision not in self._texts:
            self._texts[migration.revision] = migration.path.read_text(encoding="utf-8")
        return self._texts[migration.revision]

    def _provides(self, migration: Migration) -> set[tuple[str, str | None]]:
        """``(table, None)`` for each table the upgrade creates, ``(table, column)`` for each
        column it creates with it, adds, renames, alters or makes unique (or a primary key)."""
        if migration.revision not in self._provided:
            # The migration analysis (and sqlparse) loads only when a change needs it.
            from .analysis import operations as recorded_operations
            from .statements import AddColumn, CreateTable, Rename

            module = self.graph.script.get_revision(migration.revision).module
            provided: set[tuple[str, str | None]] = set()
            for operation in recorded_operations(module, "upgrade", self.dialect):
                for effect in operation.effects:
                    if isinstance(effect, CreateTable):
                        provided.add((effect.table.table, None))
                        provided.update((effect.table.table, column) for column in effect.columns)
                    elif isinstance(effect, AddColumn) and effect.column.column:
                        provided.add((effect.column.table, effect.column.column))
                    elif isinstance(effect, Rename):
                        target = effect.target
                        provided.add(
                            (effect.new_name, None) if target.column is None else (target.table, effect.new_name)
                        )
                if isinstance(operation.source, _COLUMN_CHANGES) and operation.table:
                    provided.update((operation.table, column) for column in _columns_of(operation.source))
            self._provided[migration.revision] = provided
        return self._provided[migration.revision]


def _columns_of(operation: ops.MigrateOperation) -> list[str]:
    """The column names an ``alter_column``, unique constraint, index or primary key names
    (an index on an expression names none)."""
    if isinstance(operation, ops.AlterColumnOp):
        return [operation.column_name]
    if isinstance(operation, ops.CreateIndexOp) and not operation.unique:
        return []
    found = getattr(operation, "columns", None) or ()
    return [column if isinstance(column, str) else column.name for column in found
            if isinstance(column, str) or isinstance(getattr(column, "name", None), str)]


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
    target = getattr(op, "table_name", None) or getattr(op, "source_table", "")
    if isinstance(op, ops.CreateForeignKeyOp):
        return f"{kind} {target}.{','.join(op.local_cols)} -> {op.referent_table}"
    column = getattr(op, "column_name", None) or getattr(getattr(op, "column", None), "name", None)
    return f"{kind} {target}{'.' + column if column else ''}".strip()


def next_filename(folder: Path, message: str, taken: int = 0) -> Path:
    """``0003_add_tags.py``: the number after the folder's highest (and ``taken`` more, for the
    app's earlier new migrations of the same run), then the message's slug."""
    numbers = [number for p in folder.glob("*.py") if (number := file_number(p.name)) is not None]
    return folder / f"{max(numbers, default=0) + 1 + taken:04d}_{slugify(message) or 'auto'}.py"


def file_number(name: str) -> int | None:
    """The number a migration file takes in its folder: ``0003`` of ``0003_x.py``, ``0004`` of a
    squash ``0002_squashed_0004_x.py`` (as Django numbers after a squash); None without one."""
    found = SQUASHED_NUMBER_RE.match(name) or NUMBER_RE.match(name)
    return int(found.group(1)) if found else None


def django_filename(path: Path, message: str) -> Path:
    """``0003_add_tags.py`` for a file Alembic wrote into its app's folder: the next number in
    that folder, then the message's slug."""
    numbers = [
        number for p in path.parent.glob("*.py") if p != path and (number := file_number(p.name)) is not None
    ]
    return path.with_name(f"{max(numbers, default=0) + 1:04d}_{slugify(message) or 'auto'}.py")
