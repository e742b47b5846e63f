"""The revision graph seen per app: which migrations an app has, what is applied, what a name means.

Alembic keeps one graph with one branch per app; "where is app X" cannot be read off
``alembic_version`` (a head that another app depends on is not stored there), so it is derived
here from the applied closure of the stored heads.
"""

from __future__ import annotations

import difflib
import gc
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .apps import AppRegistry
from .errors import RollbackError
from .index import Declared
from .loader import resolved_dependencies
from .wording import shown_path

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector paused while a graph (or what is read about it) is built:
    10,000 migrations are tens of thousands of new objects, which would wake it dozens of times,
    and a full collection walks every object the process holds (Flask, SQLAlchemy, the models)
    though nothing built here is garbage. It runs again afterwards, as before."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(slots=True, unsafe_hash=True)
class Migration:
    """One migration file: its revision id, app, Django-style name and file (slots, the folder
    shared: a graph of 10,000 migrations stays small). Never changed once made; not declared
    frozen because a frozen dataclass takes five times as long to make (10 ms at 10,000)."""

    revision: str
    app: str
    #: ``<name>.py`` (the string the revision index holds: no second copy per migration).
    filename: str
    #: The app folder (resolved) holding it.
    directory: Path
    parents: tuple[str, ...]
    dependencies: tuple[str, ...]
    #: The ``irreversible`` marker the file declares (a rollback barrier), None when absent.
    irreversible: Any = field(default=None, compare=False)
    #: The Create Date of its docstring, as Alembic's template writes it.
    created: str | None = field(default=None, compare=False)
    #: A squash's replaced revisions, in order (squash.py); empty for any other migration.
    replaces: tuple[str, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        """The Django-style name: the file's name without ``.py``."""
        return self.filename[:-3]

    @property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"


class MigrationGraph:
    """Migrations in a global topological order (parents and dependencies first).

    Built from the files' headers (the revision index): nothing is imported. ``script``, the
    Alembic ScriptDirectory that runs steps, is made only when something runs."""

    def __init__(
        self,
        declared: Mapping[str, Declared],
        registry: AppRegistry,
        script: Callable[[], ScriptDirectory],
    ) -> None:
        self._script = script
        self.registry = registry
        self._order = _order(declared, registry)
        #: Revision → migration, in the global order (shared: never changed).
        self.migrations = self._order.migrations
        self._by_app = self._order.by_app
        #: A squash's replaced revision -> the squash (squash.py): a version table naming the
        #: last replaced revision has the squash applied (shared: never changed).
        self.replaced = self._order.replaced

    @cached_property
    def script(self) -> ScriptDirectory:
        return self._script()

    def scripts(self, revisions: Iterable[str]) -> list[Script]:
        return [self.script.get_revision(rev) for rev in revisions]

    def of_app(self, label: str) -> list[Migration]:
        """The app's migrations, in the global order."""
        return list(self._by_app.get(label, ()))

    def app_heads(self, label: str) -> list[str]:
        """Revisions of the app that no other revision of the app builds on."""
        members = self._by_app.get(label, ())
        parents = {p for m in members for p in m.parents}
        return [m.revision for m in members if m.revision not in parents]

    def heads(self) -> list[str]:
        return [rev for label in self.registry.labels for rev in self.app_heads(label)]

    def closure(self, revisions: Iterable[str]) -> set[str]:
        """The revisions plus everything they stand on (parents and depends_on); the last
        revision a squash replaces stands for the squash (a version table written before it)."""
        seen: set[str] = set()
        stack = [self.squash_of(rev) if rev in self.replaced else rev for rev in revisions]
        stack = [rev for rev in stack if rev in self.migrations]
        while stack:
            rev = stack.pop()
            if rev in seen:
                continue
            seen.add(rev)
            migration = self.migrations[rev]
            stack.extend(migration.parents)
            stack.extend(migration.dependencies)
        return seen

    def dependents(self, revisions: Iterable[str]) -> set[str]:
        """The revisions plus every revision standing on them (parents or depends_on), in any app."""
        result = set(revisions)
        for rev, migration in self.migrations.items():  # topological: parents first
            if rev not in result and result.intersection(migration.parents + migration.dependencies):
                result.add(rev)
        return result

    def unknown(self, revisions: Iterable[str]) -> list[str]:
        """Revisions stored in the database that no file provides (nor a squash replaces)."""
        return [rev for rev in revisions if rev not in self.migrations and rev not in self.replaced]

    def squash_of(self, revision: str) -> str:
        """The squash standing for a replaced revision the database names. Only the last one it
        replaces can be named by a database this graph serves: one inside the range is a
        position only the original files can express (``Project.unsquash`` reads them)."""
        squash = self.migrations[self.replaced[revision]]
        if revision != squash.replaces[-1]:
            raise RollbackError(
                f"revision {revision} is inside the range squash {squash.label} replaces "
                f"({squash.replaces[0]}..{squash.replaces[-1]}): only the original migration "
                "files can go on from there; restore them (e.g. from git) next to the squash"
            )
        return squash.revision

    def squashes_inside(self, revisions: Iterable[str]) -> set[str]:
        """Squashes that a stored revision stands inside of (applied only partly)."""
        found = set()
        for rev in revisions:
            squash = self.replaced.get(rev)
            if squash is not None and rev != self.migrations[squash].replaces[-1]:
                found.add(squash)
        return found

    def position(self, label: str, applied: AbstractSet[str]) -> list[str]:
        """Where an app stands: its applied revisions that no applied revision of it builds on."""
        members = [m for m in self._by_app.get(label, ()) if m.revision in applied]
        parents = {p for m in members for p in m.parents}
        return [m.revision for m in members if m.revision not in parents]

    def stored_heads(self, applied: set[str]) -> tuple[str, ...]:
        """The rows Alembic keeps for an applied set: members nothing else applied stands on."""
        below: set[str] = set()
        for rev in applied:
            migration = self.migrations[rev]
            below.update(migration.parents)
            below.update(migration.dependencies)
        return tuple(rev for rev in self.migrations if rev in applied and rev not in below)

    @property
    def heads_of_everything(self) -> tuple[str, ...]:
        """The version table's rows with every migration applied, as ``stored_heads`` gives them
        (once per order: ``upgrade`` of an empty database through the snapshot records them,
        every planner compares the stored heads with them). A parent is always of the same
        app, so an app's head is stood on only through another migration's depends_on."""
        order = self._order
        if order.heads_of_everything is None:
            tops = {rev for label in self._by_app for rev in self.app_heads(label)}
            tops.difference_update(dep for m in self.migrations.values() for dep in m.dependencies)
            order.heads_of_everything = tuple(rev for rev in self.migrations if rev in tops)
        return order.heads_of_everything

    def applied_at(self, references: Sequence[str]) -> set[str]:
        """The applied set a starting point names (the FROM of ``--sql FROM:TO``, read instead of
        the database): ``base`` (nothing), ``heads`` (everything), or migrations in any form
        ``named`` takes (``APP`` alone: its head), each with everything it stands on."""
        applied: set[str] = set()
        for reference in references:
            words = reference.split()
            app, rest = words if len(words) == 2 else self.split_reference(reference.strip())
            if app is not None:
                self.registry.get(app)
            if rest in ("base", "zero"):
                continue
            if rest in ("head", "heads"):
                applied |= self.closure(self.app_heads(app) if app is not None else self.heads())
                continue
            applied |= self.closure([self.named(words).revision])
        return applied

    def split_reference(self, text: str) -> tuple[str | None, str]:
        """``APP@REST`` or ``APP.REST`` (APP an app's label, as output prints migrations:
        ``blog.0001_initial``) → (APP, REST); anything else → (None, text).

        Revision ids never hold a dot, so only a known app before the first dot splits."""
        app, at, rest = text.partition("@")
        if at:
            return app, rest
        app, dot, rest = text.partition(".")
        if dot and app in self.registry:
            return app, rest
        return None, text

    def find(self, text: str, app: str | None = None) -> Migration:
        """A migration by revision id, name, or a unique prefix of either, within ``app``; without
        ``app``, ``text`` may name it as ``APP.NAME`` or ``APP@NAME`` (any prefix form)."""
        named_app, rest = self.split_reference(text)
        if app is None and named_app is not None:
            self.registry.get(named_app)
            app, text = named_app, rest
        elif app is not None and named_app == app:  # 'sqlmigrate blog blog.0001_initial'
            text = rest
        elif app is not None and named_app in self.registry:
            raise RollbackError(f"{text!r} names app {named_app!r}, not {app!r}")
        pool = [m for m in self.migrations.values() if app is None or m.app == app]
        exact = [m for m in pool if text in (m.revision, m.name)]
        matches = exact or [
            m for m in pool if text and (m.revision.startswith(text) or m.name.startswith(text))
        ]
        where = f" in app {app!r}" if app else ""
        if not matches:
            what = f"no migration{where}" if app else "no app or migration"
            raise RollbackError(
                f"{what} matches {text!r}{self._did_you_mean(text, pool, app is None)}; "
                "see 'flask db showmigrations'"
            )
        if len(matches) > 1:
            matches.sort(key=lambda m: m.label)
            names = ", ".join(f"{m.label} ({m.revision})" for m in matches[:6])
            apps = sorted({m.app for m in matches})
            advice = (
                f"name the app, e.g. '{apps[0]}.{text}'" if len(apps) > 1 else "give more characters"
            )
            raise RollbackError(f"{text!r} is ambiguous{where}: it matches {names}; {advice}")
        return matches[0]

    def _did_you_mean(self, text: str, pool: list[Migration], with_apps: bool) -> str:
        """`` (did you mean 'blog.0002_tags'?)`` for the names closest to a word that named
        nothing, written as output shows them; "" when nothing is close."""
        shown_as: dict[str, str] = {label: label for label in self.registry.labels} if with_apps else {}
        for migration in pool:
            for spelling in (migration.label, migration.name, migration.revision):
                shown_as.setdefault(spelling, migration.label)
        close = difflib.get_close_matches(text, list(shown_as), n=3)
        suggestions = list(dict.fromkeys(shown_as[word] for word in close))
        if not suggestions:
            return ""
        return f" (did you mean {' or '.join(repr(name) for name in suggestions)}?)"

    def named(self, words: Sequence[str]) -> Migration:
        """The one migration that command words name: ``APP NAME``, ``APP.NAME``, ``APP@NAME``,
        a revision id, name or unique prefix, or ``APP`` alone (its head)."""
        if not words or len(words) > 2:
            raise RollbackError(
                f"expected one migration, e.g. 'blog.0002' or 'blog 0002', not {' '.join(words)!r}"
            )
        if len(words) == 2:
            self.registry.get(words[0])
            return self.find(words[1], words[0])
        if words[0] in self.registry:
            heads = self.app_heads(words[0])
            if len(heads) != 1:
                what = "no migrations" if not heads else f"{len(heads)} heads"
                raise RollbackError(f"app {words[0]!r} has {what}; name one migration")
            return self.migrations[heads[0]]
        return self.find(words[0])


@dataclass(slots=True)
class _Order:
    """The migrations of a set of headers in the global order, by app: what a graph is made of,
    shared by every graph of the same headers and app folders."""

    declared: Mapping[str, Declared]
    migrations: dict[str, Migration]
    by_app: dict[str, list[Migration]]
    replaced: dict[str, str]
    heads_of_everything: tuple[str, ...] | None = None


#: The last order made for each list of (app, folder) in this process. ``loader.scan`` gives the
#: very same header map while no migration file changed (every file stat'ed: index.py), so a
#: process making many graphs of unchanged files (a test suite upgrading a database per test)
#: orders them once.
_orders: dict[tuple[tuple[str, Path], ...], _Order] = {}


def _order(declared: Mapping[str, Declared], registry: AppRegistry) -> _Order:
    directories = registry.directories()
    key = tuple(directories.items())
    last = _orders.get(key)
    if last is not None and last.declared is declared:
        return last
    app_by_dir = {d: (label, d.resolve()) for label, d in directories.items()}
    dependencies = resolved_dependencies(dict(declared))
    found: dict[str, Migration] = {}
    for revision, item in declared.items():
        app, resolved = app_by_dir[item.directory]  # read app folder by app folder
        found[revision] = Migration(
            revision,
            app,
            item.filename,
            resolved,
            item.down_revision,
            dependencies[revision],
            item.irreversible,
            item.created,
            item.replaces,
        )
    migrations = _topological(found, registry.labels)
    _check_branches(migrations)
    by_app: dict[str, list[Migration]] = {label: [] for label in registry.labels}
    for migration in migrations.values():
        by_app.setdefault(migration.app, []).append(migration)
    replaced = {old: rev for rev, m in migrations.items() for old in m.replaces}
    order = _orders[key] = _Order(declared, migrations, by_app, replaced)
    return order


def _check_branches(found: dict[str, Migration]) -> None:
    """A revision must stay in its app's branch: its parent lives in the same folder."""
    for migration in found.values():
        for parent in migration.parents:
            if found[parent].app != migration.app:
                raise RollbackError(
                    f"migration {shown_path(migration.path)} has down_revision {parent!r} from app "
                    f"{found[parent].app!r}; cross-app links belong in depends_on"
                )


def _topological(found: dict[str, Migration], labels: list[str]) -> dict[str, Migration]:
    """Parents and dependencies first; ties broken by app order, then file name, so the
    order (and every plan) is the same on every machine.

    Each migration is numbered by that tie-break order once, so the ready set is a heap of
    plain ints (the smallest ready number next: the same order as comparing the keys)."""
    rank = {label: index for index, label in enumerate(labels)}
    unranked = len(rank)
    by_key = sorted(found.values(), key=lambda m: (rank.get(m.app, unranked), m.name, m.revision))
    number = {migration.revision: index for index, migration in enumerate(by_key)}
    waiting = [0] * len(by_key)
    children: list[list[int]] = [[] for _ in by_key]
    for index, migration in enumerate(by_key):
        needs = migration.parents + migration.dependencies
        if len(needs) > 1:
            needs = tuple(set(needs))
        waiting[index] = len(needs)
        for need in needs:
            children[number[need]].append(index)
    ready = [index for index, count in enumerate(waiting) if not count]
    heapq.heapify(ready)
    ordered: dict[str, Migration] = {}
    while ready:
        index = heapq.heappop(ready)
        migration = by_key[index]
        ordered[migration.revision] = migration
        for child in children[index]:
            waiting[child] -= 1
            if not waiting[child]:
                heapq.heappush(ready, child)
    if len(ordered) != len(found):
        stuck = sorted(f"{m.label} ({rev})" for rev, m in found.items() if rev not in ordered)
        raise RollbackError(f"migrations depend on each other in a cycle: {', '.join(stuck)}")
    return ordered
