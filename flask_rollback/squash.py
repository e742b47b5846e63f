"""Squashed migrations (Django's ``squashmigrations``) on Alembic, which has no ``replaces``.

``flask db squashmigrations blog 0002 0004`` writes ONE file, ``0002_squashed_0004_<name>.py``,
in blog's folder, with ``replaces = ("<0002's id>", "<0003's>", "<0004's>")``, the same
``down_revision`` (and branch label) as 0002, the other apps' ``depends_on`` of the range, and
as its ``upgrade()`` the originals' ``upgrade()`` statements in order, its ``downgrade()`` their
``downgrade()`` statements in reverse order. Only Alembic operations are carried (``op.<schema
op>(...)`` and ``with op.batch_alter_table(...)`` blocks of them), copied as written, so the
squash does exactly what the originals did, on every backend; nothing is optimised (Django
merges create+alter; proving two op sequences equal is not worth a wrong schema). Diffing the
schema before and after the range with autogenerate was rejected: it sees only what
autogenerate compares (no CHECK constraints, server defaults off, renames as drop + add, one
backend's types) and would make a squash that differs from the originals. A data step
(``op.execute``, ``op.bulk_insert``, any other Python statement, module-level code beyond
imports) is refused, naming the migration, unless that migration says ``elidable = True``
(its data steps are then dropped, as Django drops elidable RunPython/RunSQL).

How the graph reads it (loader.py calls ``apply_squashes`` on the revision index, every file):

- While the originals are still there, they are hidden from the graph and from Alembic's
  revision map, so the app stays one line. Any migration whose ``down_revision`` or
  ``depends_on`` names a replaced revision (0005 still says ``down_revision = <0004's id>``,
  another app may depend on 0004) is read as naming the squash instead: no file but the new
  one is written, and the checksums of applied files do not change.
- A fresh database runs the squash alone.
- A database that applied the originals has 0004's id in the version table (or a later
  revision). The graph reads the last replaced revision as the squash (``closure``): upgrade
  has nothing to do, showmigrations shows the squash applied (at the time of the latest
  original). The first run that changes the schema rewrites that version row to the squash's
  id in its own transaction (``executor.settle_version_table``, with a fake log row for it), so
  Alembic, which checks the rows it updates, then moves from the squash to 0005, or downgrades
  the squash by running its ``downgrade()``.
- A database inside the range (at 0003: only part applied) cannot run the squash. Like
  Django's loader, the project is then read WITHOUT that squash (``Project.unsquash``): the
  originals are used, and what names the squash is read as naming 0004; upgrade runs 0004 and
  on. Only a revision the database stores can say so, so a range may contain no migration
  another app depends on except its last (refused when squashing).
- The originals can be deleted once every database has applied all of them (``flask db
  check`` says when, for the databases it knows: the configured one and its deploy records):
  ``replaces`` stays in the squash, so a version table naming 0004 is still understood; only a
  database inside the range needs the originals.
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import RollbackError
from .index import Declared, module_assignments

#: Alembic operations that change the schema only (``op.X`` / ``batch_op.X`` at statement level).
SCHEMA_OPS = frozenset({
    "add_column", "alter_column", "create_check_constraint", "create_exclude_constraint",
    "create_foreign_key", "create_index", "create_primary_key", "create_table",
    "create_table_comment", "create_unique_constraint", "drop_column", "drop_constraint",
    "drop_index", "drop_table", "drop_table_comment", "rename_table",
})
#: Module-level names a migration may assign besides its header.
HEADER_NAMES = frozenset({
    "revision", "down_revision", "branch_labels", "depends_on", "irreversible", "elidable", "replaces",
})


# -- the graph's view -------------------------------------------------------------------------


def apply_squashes(
    declared: dict[str, Declared], unsquashed: Iterable[str] = ()
) -> tuple[dict[str, Declared], dict[str, Declared]]:
    """The headers the graph is made of, and the files it leaves out: originals hidden behind
    their squash, and squashes set aside.

    Squashes in ``unsquashed`` are set aside instead (a database inside their range): their
    originals are used and what names the squash is read as naming the last original."""
    unsquashed = set(unsquashed)
    renamed: dict[str, str] = {}
    hidden: dict[str, Declared] = {}
    for revision, item in declared.items():
        if not item.replaces:
            continue
        if revision in unsquashed:
            missing = [old for old in item.replaces if old not in declared]
            if missing:
                raise RollbackError(
                    f"the database is inside the range squash {item.path} replaces (it applied "
                    f"only part of it) and the original files of {', '.join(missing)} are gone: "
                    "restore them (e.g. from git) next to the squash, upgrade, then delete them"
                )
            renamed[revision] = item.replaces[-1]
            hidden[revision] = item
            continue
        for old in item.replaces:
            renamed[old] = revision
            if old in declared:
                hidden[old] = declared[old]
    if not renamed:
        return declared, {}
    kept: dict[str, Declared] = {}
    for revision, item in declared.items():
        if revision in hidden:
            continue
        down = _renamed(item.down_revision, renamed, revision)
        depends = _renamed(item.depends_on, renamed, revision)
        if (down, depends) != (item.down_revision, item.depends_on):
            item = replace(item, down_revision=down, depends_on=depends, file_key=item.declared_key())
        kept[revision] = item
    return kept, hidden


def _renamed(names: tuple[str, ...], renamed: dict[str, str], own: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n in (renamed.get(name, name) for name in names) if n != own))


# -- writing a squash -------------------------------------------------------------------------


@dataclass
class Original:
    """One replaced migration, read with ``ast`` (never imported)."""

    label: str
    path: Path
    imports: list[str] = field(default_factory=list)
    upgrade: list[str] = field(default_factory=list)
    downgrade: list[str] = field(default_factory=list)
    irreversible: str | None = None


def read_original(label: str, path: Path) -> Original:
    """The imports and operation statements of a migration file; anything that is not an
    Alembic schema operation refuses the squash, naming the migration, unless the file says
    ``elidable = True`` (then its data steps are left out)."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    assignments = module_assignments(tree)
    elidable = _constant(assignments.get("elidable")) is True
    irreversible = _constant(assignments.get("irreversible"))
    found = Original(label, path, irreversible=str(irreversible) if irreversible else None)
    functions: dict[str, ast.FunctionDef] = {}
    for index, node in enumerate(tree.body):
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.imports.append(ast.get_source_segment(source, node) or "")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _assigned(node) <= HEADER_NAMES:
            continue
        elif isinstance(node, ast.FunctionDef) and node.name in ("upgrade", "downgrade"):
            functions[node.name] = node
        else:
            raise _cannot(label, node.lineno, "module-level code other than imports and the header")
    for name in ("upgrade", "downgrade"):
        function = functions.get(name)
        if function is None:
            raise _cannot(label, 1, f"no {name}() function")
        statements = _operations(label, source, function.body, elidable)
        setattr(found, name, statements)
    return found


def _operations(label: str, source: str, body: list[ast.stmt], elidable: bool) -> list[str]:
    """The statements of upgrade()/downgrade() that are schema operations, as written."""
    kept: list[str] = []
    for node in body:
        if isinstance(node, ast.Pass) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            continue
        why = _not_schema(node)
        if why is None:  # as written, its continuation lines dedented with it
            segment = ast.get_source_segment(source, node) or ""
            kept.append(textwrap.dedent(" " * node.col_offset + segment))
        elif not elidable:
            raise _cannot(label, node.lineno, why)
    return kept


def _not_schema(node: ast.stmt) -> str | None:
    """None for ``op.<schema op>(...)`` or a ``with op.batch_alter_table(...) as b:`` block of
    ``b.<schema op>(...)``; else what it is, for the refusal."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return _op_call(node.value, "op")
    if isinstance(node, ast.With) and len(node.items) == 1:
        item = node.items[0]
        call = item.context_expr
        if (
            isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "op"
            and call.func.attr == "batch_alter_table" and isinstance(item.optional_vars, ast.Name)
        ):
            batch = item.optional_vars.id
            for inner in node.body:
                if not (isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Call)):
                    return f"line {inner.lineno}: Python code in a batch_alter_table block"
                why = _op_call(inner.value, batch)
                if why is not None:
                    return why
            return None
    return f"line {node.lineno}: Python code ({type(node).__name__.lower()}), not an Alembic operation"


def _op_call(call: ast.Call, receiver: str) -> str | None:
    func = call.func
    if (
        isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        and func.value.id == receiver
    ):
        if func.attr in SCHEMA_OPS:
            return None
        return f"line {call.lineno}: {receiver}.{func.attr}() (a data step, or not a schema operation)"
    return f"line {call.lineno}: a call that is not an Alembic operation"


def _cannot(label: str, line: int, why: str) -> RollbackError:
    return RollbackError(
        f"cannot squash {label}: {why} (at line {line}); only Alembic schema operations can be "
        "squashed: move data steps to a migration outside the range, or set 'elidable = True' "
        "in that migration to leave them out of the squash; nothing was written"
    )


def _assigned(node: ast.Assign | ast.AnnAssign) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {t.id if isinstance(t, ast.Name) else "" for t in targets}


def _constant(node: ast.Assign | ast.AnnAssign | None) -> object:
    value = getattr(node, "value", None)
    return value.value if isinstance(value, ast.Constant) else None


def squash_revision(app: str, replaces: Iterable[str]) -> str:
    """The squash's revision id, derived from what it replaces: the same on every machine."""
    return hashlib.sha256(f"squash:{app}:{','.join(replaces)}".encode()).hexdigest()[:12]


def render(
    *,
    title: str,
    revision: str,
    down_revision: tuple[str, ...],
    branch_labels: tuple[str, ...],
    depends_on: tuple[str, ...],
    originals: list[Original],
    replaces: list[str],
) -> str:
    """The squash's source: a header like every migration's, then the operations."""
    imports = list(dict.fromkeys(line for original in originals for line in original.imports))
    reasons = [f"{o.label}: {o.irreversible}" for o in originals if o.irreversible]

    def names(values: tuple[str, ...]) -> str:
        return repr(None if not values else values[0] if len(values) == 1 else values)

    def body(parts: list[tuple[str, list[str]]]) -> str:
        lines: list[str] = []
        for label, statements in parts:
            if statements:
                lines.append(f"# {label}")
                lines += statements
        text = "\n".join(lines) or "pass"
        return textwrap.indent(text, "    ")

    replaced = "\n".join(f"    {rev!r},  # {o.label}" for rev, o in zip(replaces, originals))
    parts = [
        f'"""{title}\n\nSquashes {", ".join(o.label for o in originals)}.\n"""\n',
        *imports,
        "",
        f"revision = {revision!r}",
        f"down_revision = {names(down_revision)}",
        f"branch_labels = {names(branch_labels)}",
        f"depends_on = {names(depends_on)}",
        f"replaces = (\n{replaced}\n)",
    ]
    if reasons:
        parts.append(f"irreversible = {'; '.join(reasons)!r}")
    parts += [
        "",
        "",
        "def upgrade() -> None:",
        body([(o.label, o.upgrade) for o in originals]),
        "",
        "",
        "def downgrade() -> None:",
        body([(o.label, o.downgrade) for o in reversed(originals)]),
        "",
    ]
    return "\n".join(parts)
