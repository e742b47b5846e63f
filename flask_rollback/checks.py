"""Safety checks on migration code that need no database: is a downgrade real?

A migration declares what its downgrade means at module level:

- ``irreversible = "reason"``: it cannot be undone; a rollback barrier, reported by name;
- ``noop_downgrade = "reason"``: its downgrade is empty on purpose (what Django's
  ``RunPython.noop`` says), e.g. a backfill that has nothing to undo. It covers reversibility
  only: what the migration destroys is still counted and refused like any other loss.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from types import ModuleType


def downgrade_problem(module: ModuleType) -> str | None:
    """Why this migration cannot be reverted, or None when its downgrade looks real."""
    reason = getattr(module, "irreversible", None)
    if reason:
        return f"declared irreversible: {reason}"
    downgrade = getattr(module, "downgrade", None)
    if downgrade is None:
        return "has no downgrade()"
    down = _body_kind(downgrade)
    if down == "raises":
        return "downgrade() raises NotImplementedError"
    if down == "empty" and _body_kind(getattr(module, "upgrade", None)) != "empty":
        if getattr(module, "noop_downgrade", None):
            return None
        return (
            "downgrade() is empty but upgrade() is not; if nothing needs undoing, declare "
            'noop_downgrade = "why", if it cannot be undone, irreversible = "why"'
        )
    return None


def undeclared_empty_downgrade(source: bytes) -> bool:
    """Read without importing (``adopt``): is ``downgrade()`` empty while ``upgrade()`` is not,
    with neither ``noop_downgrade`` nor ``irreversible`` declared? Reverting it is refused."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    declared = {
        target.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    if declared & {"noop_downgrade", "irreversible"} or "downgrade" not in functions:
        return False
    upgrade = functions.get("upgrade")
    return _node_kind(functions["downgrade"]) == "empty" and (
        upgrade is not None and _node_kind(upgrade) != "empty"
    )


def _body_kind(function: object) -> str:
    """'empty' (only pass/.../docstring), 'raises' (starts by raising NotImplementedError) or 'code'."""
    if function is None:
        return "empty"
    try:
        source = textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return "code"
    return _node_kind(ast.parse(source).body[0])


def _node_kind(node: ast.AST) -> str:
    """The same verdict, on a parsed function."""
    body = [
        stmt for stmt in getattr(node, "body", [])
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        and not isinstance(stmt, ast.Pass)
    ]
    if not body:
        return "empty"
    first = body[0]
    if isinstance(first, ast.Raise) and first.exc is not None:
        target = first.exc.func if isinstance(first.exc, ast.Call) else first.exc
        if isinstance(target, ast.Name) and target.id == "NotImplementedError":
            return "raises"
    return "code"
