"""Renaming an app: where its label is written down, and rewriting it everywhere at once.

A label lives in three places: the app's folder name (``<root>/<label>/``), migration files
(``branch_labels`` of its root migration, ``depends_on`` of other apps' migrations naming the
branch) and the database (the applied log's ``app``, the archive registry's ``app`` and
migration label, the deploy records' heads keyed by app). Revision ids never change, so the
version table is left alone.

File changes are made so that they can be undone: the caller applies them inside the database
transaction that relabels the records and undoes them if that transaction fails.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .archive import ArchiveLog
from .deploys import DeployLog
from .errors import RollbackError
from .recorder import Recorder
from .settings import Settings

#: The module-level assignments of a migration file that name branches.
LABEL_FIELDS = ("branch_labels", "depends_on")


@dataclass(frozen=True)
class Declaration:
    """A ``branch_labels`` / ``depends_on`` assignment: its names, or None when computed."""

    field: str
    names: tuple[str, ...] | None
    source: str


@dataclass(frozen=True)
class LabelEdit:
    """A migration file whose ``branch_labels`` / ``depends_on`` name the old label."""

    path: Path
    fields: tuple[str, ...]
    before: bytes
    after: bytes


def declarations(source: bytes) -> list[Declaration]:
    """The file's module-level ``branch_labels`` and ``depends_on`` (SyntaxError if broken)."""
    found = []
    for node, name, value in _label_assignments(ast.parse(source)):
        literals = _string_literals(value)
        names = None if literals is None else tuple(text for _node, text in literals)
        segment = ast.get_source_segment(source.decode("utf-8", "replace"), node) or ""
        found.append(Declaration(name, names, segment))
    return found


def relabel_source(source: bytes, old: str, new: str) -> tuple[bytes, tuple[str, ...]]:
    """The file with ``old`` renamed to ``new`` in its ``branch_labels`` and ``depends_on``
    (``old`` and ``old@...``), and the fields that changed. Only those string literals change,
    byte for byte; computed values are left alone (the caller refuses them)."""
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    replacements: list[tuple[int, int, bytes]] = []
    fields: list[str] = []
    for _node, name, value in _label_assignments(ast.parse(source)):
        for constant, text in _string_literals(value) or []:
            renamed = renamed_reference(text, old, new)
            if renamed is None:
                continue
            start = line_starts[constant.lineno - 1] + constant.col_offset
            end = line_starts[constant.end_lineno - 1] + constant.end_col_offset  # type: ignore[operator]
            quote = source[end - 1 : end]
            replacements.append((start, end, quote + renamed.encode() + quote))
            if name not in fields:
                fields.append(name)
    for start, end, literal in sorted(replacements, reverse=True):
        source = source[:start] + literal + source[end:]
    return source, tuple(fields)


def renamed_reference(value: str, old: str, new: str) -> str | None:
    """``old`` → ``new`` and ``old@rev`` → ``new@rev``; None for any other name."""
    if value == old:
        return new
    if value.startswith(old + "@"):
        return new + value[len(old):]
    return None


def _label_assignments(tree: ast.Module) -> list[tuple[ast.stmt, str, ast.expr]]:
    found: list[tuple[ast.stmt, str, ast.expr]] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in LABEL_FIELDS:
            found.append((node, target.id, value))
    return found


def _string_literals(node: ast.expr) -> list[tuple[ast.Constant, str]] | None:
    """The string literals of a None / string / tuple-or-list-of-strings value, with their
    text; None if the value is computed."""
    if isinstance(node, ast.Constant) and node.value is None:
        return []
    elements = node.elts if isinstance(node, (ast.Tuple, ast.List)) else [node]
    literals = [
        (element, element.value) for element in elements
        if isinstance(element, ast.Constant) and isinstance(element.value, str)
    ]
    return literals if len(literals) == len(elements) else None


def mentions(text: str, label: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(label)}(?![\w])", text) is not None


# -- files ---------------------------------------------------------------------------------------


@dataclass
class FileChanges:
    """Rewrite migration files, then move the app's folder; ``undo`` puts everything back."""

    edits: list[LabelEdit]
    folder: Path
    target: Path | None
    _written: list[LabelEdit] = field(default_factory=list, init=False)
    _moved: bool = field(default=False, init=False)
    _removed_empty_target: bool = field(default=False, init=False)

    def apply(self) -> None:
        try:
            for edit in self.edits:
                _write(edit.path, edit.after)
                self._written.append(edit)
            if self.target is not None:
                if self.target.exists():  # empty but for bytecode: checked by the caller
                    shutil.rmtree(self.target)
                    self._removed_empty_target = True
                self.target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self.folder, self.target)
                self._moved = True
        except OSError as exc:
            self.undo()
            raise RollbackError(
                f"cannot rename: {exc.filename}: {exc.strerror}; nothing was changed"
            ) from None

    def undo(self) -> None:
        """Best effort, newest change first."""
        if self._moved and self.target is not None:
            os.rename(self.target, self.folder)
            self._moved = False
        if self._removed_empty_target and self.target is not None:
            self.target.mkdir(parents=True, exist_ok=True)
            self._removed_empty_target = False
        while self._written:
            edit = self._written.pop()
            _write(edit.path, edit.before)


def _write(path: Path, content: bytes) -> None:
    """Replace the file in one step (a crash leaves the old or the new file, never half of
    one) and drop its bytecode: a rewrite within the same second and of the same size would
    otherwise still load the old labels from ``__pycache__``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
        cached.unlink(missing_ok=True)


def only_bytecode(folder: Path) -> bool:
    """An existing folder that holds nothing but ``__pycache__`` (safe to replace)."""
    return folder.is_dir() and all(child.name == "__pycache__" for child in folder.iterdir())


# -- the database ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelCounts:
    """How many records of the database name a label."""

    log_rows: int = 0
    archives: int = 0
    deploys: int = 0

    @property
    def total(self) -> int:
        return self.log_rows + self.archives + self.deploys


class LabelRecords:
    """The database's records of app labels: the applied log, the archive registry (``app`` and
    the ``app.migration`` label) and the deploy records' per-app heads."""

    def __init__(self, settings: Settings) -> None:
        self.log = Recorder(settings).log
        self.archives = ArchiveLog(settings.archive_table).table
        self.deploys = DeployLog(settings.deploy_table).table

    def count(self, connection: Connection, label: str) -> LabelCounts:
        present = set(sa.inspect(connection).get_table_names())
        log_rows = archives = 0
        if self.log.name in present:
            log_rows = connection.execute(
                sa.select(sa.func.count()).select_from(self.log).where(self.log.c.app == label)
            ).scalar_one()
        if self.archives.name in present:
            archives = connection.execute(
                sa.select(sa.func.count()).select_from(self.archives)
                .where(self.archives.c.app == label)
            ).scalar_one()
        deploys = len(self._deploys_naming(connection, label)) if self.deploys.name in present else 0
        return LabelCounts(int(log_rows), int(archives), deploys)

    def relabel(
        self, connection: Connection, old: str, new: str, checksums: dict[str, tuple[str, str]]
    ) -> None:
        """Rename ``old`` to ``new`` in every record, and move the recorded checksum of each
        rewritten applied file (``{revision: (sha256 before, sha256 after)}``) along with it, so
        the applied-history check still sees it unedited; the caller owns the transaction."""
        present = set(sa.inspect(connection).get_table_names())
        if self.log.name in present:
            connection.execute(self.log.update().where(self.log.c.app == old).values(app=new))
            for revision, (before, after) in checksums.items():
                connection.execute(
                    self.log.update()
                    .where(self.log.c.revision == revision, self.log.c.sha256 == before)
                    .values(sha256=after)
                )
        if self.archives.name in present:
            table = self.archives
            rows = connection.execute(
                sa.select(table.c.name, table.c.migration).where(table.c.app == old)
            ).all()
            for name, migration in rows:
                if migration.startswith(old + "."):  # the label ``app.0002_name``
                    migration = new + migration[len(old):]
                connection.execute(
                    table.update().where(table.c.name == name).values(app=new, migration=migration)
                )
        if self.deploys.name in present:
            for deploy_id, heads in self._deploys_naming(connection, old).items():
                connection.execute(
                    self.deploys.update().where(self.deploys.c.id == deploy_id).values(
                        **{
                            column: json.dumps({(new if k == old else k): v for k, v in value.items()})
                            for column, value in heads.items()
                        }
                    )
                )

    def _deploys_naming(self, connection: Connection, label: str) -> dict[int, dict[str, dict]]:  # type: ignore[type-arg]
        """``{deploy id: {column: heads}}`` of the records whose per-app heads name ``label``."""
        table = self.deploys
        found: dict[int, dict[str, dict]] = {}  # type: ignore[type-arg]
        rows = connection.execute(sa.select(table.c.id, table.c.heads_before, table.c.heads_after))
        for deploy_id, *columns in rows:
            heads = dict(zip(("heads_before", "heads_after"), (json.loads(c) for c in columns)))
            if any(label in value for value in heads.values()):
                found[deploy_id] = heads
        return found
