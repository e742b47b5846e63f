"""Alembic's ScriptDirectory for running steps, made from the revision index.

Its revision map holds a Script per migration file built from the file's header; the module
behind a Script is imported the first time Alembic (or a check) uses it, so a run imports only
the migrations it runs or analyses.
"""

from __future__ import annotations

import warnings
from types import ModuleType

from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import Revision, RevisionError, RevisionMap
from alembic.util import CommandError

from .errors import RollbackError
from .index import Declared, docstring, import_migration, imported_header
from .wording import shown_path


class IndexedScript(Script):
    """An Alembic Script made from the index: its module is imported the first time Alembic
    (or a check) uses it, so only the migrations that run or are analysed are imported."""

    def __init__(self, declared: Declared) -> None:
        self.path = str(declared.path)
        self._declared = declared
        #: Kept here, not on the header: headers are shared by every run of the process while
        #: the files are unchanged (index.py), a module is imported once per run as Alembic does.
        self._module = declared.module
        down = declared.down_revision
        Revision.__init__(
            self,
            declared.revision,
            down[0] if len(down) == 1 else (down or None),
            dependencies=declared.depends_on or None,
            branch_labels=declared.branch_labels or None,
        )

    @property
    def module(self) -> ModuleType:  # type: ignore[override]
        if self._module is None:
            declared = self._declared
            module = import_migration(declared.path)
            if imported_header(declared.path, module).graph_key() != declared.declared_key():
                raise RollbackError(
                    f"migration file {shown_path(declared.path)} sets revision, down_revision, branch_labels, "
                    "depends_on or replaces to other values when it runs than it declares; assign each "
                    "once, at module level, as a plain constant"
                )
            self._module = module
        return self._module

    @property
    def longdoc(self) -> str:  # type: ignore[override]
        """The docstring, as Alembic shows it (show, heads -v, history), read from the file
        without running it while the module is not imported."""
        if self._module is None:
            found = docstring(self._declared.path)
            if found is not None:
                return found.strip()
        return Script.longdoc.fget(self)  # type: ignore[attr-defined]


def load_scripts(config: Config, declared: dict[str, Declared]) -> ScriptDirectory:
    """The ScriptDirectory Alembic runs steps with, its revision map made from the index (no
    file imported yet); Alembic's own graph checks turned into one line."""
    script = ScriptDirectory.from_config(config)
    scripts = [IndexedScript(item) for item in declared.values()]
    script.revision_map = RevisionMap(lambda: iter(scripts))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            script.revision_map.heads  # noqa: B018 - builds the map: Alembic checks the graph
        except (CommandError, RevisionError, Warning) as exc:
            raise RollbackError(f"cannot read the migrations: {exc}") from None
    return script
