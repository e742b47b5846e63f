"""Where apps are resolved: which app (label) owns each table, and where its migrations live.

A table's app is, in order: an explicit label (``__app_label__`` on the model, or
``Table(..., info={"app": label})``); the registered blueprint or ``register_app`` package that
is the longest prefix of the model's module; for a plain Table, the single app its foreign keys
point into; otherwise the default app.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from .errors import RollbackError
from .settings import Settings

LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def validate_label(label: str, what: str = "app label") -> str:
    """Labels name folders and branches: identifiers only, so no path can escape."""
    if not isinstance(label, str) or not LABEL_RE.match(label):
        raise RollbackError(
            f"invalid {what} {label!r}: use a Python identifier "
            "(letters, digits, underscore; no '/', '.' or '-')"
        )
    return label


@dataclass(frozen=True)
class AppSpec:
    """An app someone declared: a blueprint, an explicit registration or the default."""

    label: str
    package: str | None
    directory: str | None = None
    source: str = "blueprint"


@dataclass(frozen=True)
class App:
    """A resolved app: its label, migration folder and the tables it owns."""

    label: str
    directory: Path
    tables: tuple[str, ...]
    source: str


class AppRegistry:
    """Apps in a stable order (as declared, then by label) and the table → app map."""

    def __init__(self, apps: Iterable[App], table_apps: Mapping[str, str], default: str):
        self._apps = {app.label: app for app in apps}
        self.table_apps = dict(table_apps)
        self.default_label = default

    @property
    def labels(self) -> list[str]:
        return list(self._apps)

    def __iter__(self):
        return iter(self._apps.values())

    def __contains__(self, label: object) -> bool:
        return label in self._apps

    def get(self, label: str) -> App:
        validate_label(label)
        try:
            return self._apps[label]
        except KeyError:
            known = ", ".join(self._apps) or "none yet"
            raise RollbackError(
                f"unknown app {label!r}; known apps: {known}"
            ) from None

    def app_of_table(self, table_name: str) -> str | None:
        return self.table_apps.get(table_name)

    def directories(self) -> dict[str, Path]:
        return {app.label: app.directory for app in self._apps.values()}


def blueprint_specs(flask_app: Flask) -> list[AppSpec]:
    """Each registered blueprint, keyed by the package its import name lives in."""
    specs = []
    for name, blueprint in flask_app.blueprints.items():
        specs.append(AppSpec(label=name, package=_package_of(blueprint.import_name)))
    return specs


def _package_of(import_name: str) -> str:
    """A blueprint made in ``pkg/views.py`` owns the models of ``pkg``, not just ``pkg.views``."""
    module = sys.modules.get(import_name)
    if module is not None and not hasattr(module, "__path__") and "." in import_name:
        return import_name.rsplit(".", 1)[0]
    return import_name


def resolve_apps(
    metadata: sa.MetaData,
    mapped_classes: Iterable[type],
    specs: Iterable[AppSpec],
    settings: Settings,
) -> AppRegistry:
    """Assign every table of ``metadata`` to an app and build the registry."""
    default = validate_label(settings.default_app, "default app label")
    specs = list(specs)
    explicit = {spec.label for spec in specs if spec.source == "registered"}
    # An explicit registration overrides a blueprint of the same label or package.
    by_label: dict[str, AppSpec] = {}
    for spec in specs:
        if spec.source != "registered" and (
            spec.label in explicit
            or any(s.package == spec.package for s in specs if s.source == "registered")
        ):
            continue
        by_label[spec.label] = spec

    claims: dict[str, tuple[str, str]] = {}

    def claim(table: str, label: str, why: str) -> None:
        previous = claims.get(table)
        if previous and previous[0] != label:
            raise RollbackError(
                f"table {table!r} is claimed by two apps: {previous[0]!r} ({previous[1]}) "
                f"and {label!r} ({why}); give it one app with __app_label__ or info={{'app': ...}}"
            )
        claims[table] = (label, why)

    for cls in mapped_classes:
        mapper = sa.inspect(cls)
        # A subclass owns only the tables it adds: its parent's table stays the parent's.
        inherited = mapper.inherits.tables if mapper.inherits is not None else []
        for table in mapper.tables:
            if not isinstance(table, sa.Table) or table.metadata is not metadata:
                continue
            if any(table is parent for parent in inherited):
                continue
            label, why = _label_for_class(cls, table, by_label, default)
            claim(table.name, label, why)

    for table in metadata.sorted_tables:
        explicit_label = table.info.get("app")
        if explicit_label is not None:
            claim(table.name, validate_label(explicit_label), "Table info")
    for table in metadata.sorted_tables:
        if table.name in claims:
            continue
        targets = {
            claims[fk.column.table.name][0]
            for fk in table.foreign_keys
            if fk.column.table.name in claims
        }
        if len(targets) > 1:
            raise RollbackError(
                f"cannot decide the app of table {table.name!r}: its foreign keys point into "
                f"apps {', '.join(sorted(targets))}; set Table(..., info={{'app': LABEL}})"
            )
        claim(table.name, targets.pop() if targets else default, "foreign keys")

    owners = {label for label, _ in claims.values()}
    for label in owners:
        validate_label(label)
    tables_by_app: dict[str, list[str]] = {}
    for table, (label, _) in claims.items():
        tables_by_app.setdefault(label, []).append(table)

    root = Path(settings.directory)
    _check_folder(root, "the migrations folder")
    labels: list[str] = [s.label for s in by_label.values() if s.label in owners or s.source == "registered"]
    if default in owners and default not in labels:
        labels.append(default)
    labels += sorted(owners - set(labels))
    # Apps whose own folder (an override) still holds migrations count even without models.
    overrides = {**{s.label: s.directory for s in by_label.values() if s.directory},
                 **settings.app_directories}
    labels += sorted(
        label for label, folder in overrides.items()
        if label not in labels and folder and _has_migrations(Path(folder))
    )
    taken = {Path(folder).resolve() for folder in overrides.values() if folder}
    labels += sorted(_labels_on_disk(root, taken) - set(labels))

    unknown = sorted(set(settings.app_directories) - set(labels))
    if unknown:
        raise RollbackError(
            f"ROLLBACK_APP_DIRECTORIES names app {unknown[0]!r}, which has no models and no "
            f"migrations{_suggest_label(unknown[0], labels)}; known apps: "
            f"{', '.join(labels) or 'none yet'}"
        )

    apps = []
    for label in labels:
        validate_label(label)
        spec = by_label.get(label)
        directory = settings.app_directories.get(label) or (spec.directory if spec else None)
        apps.append(
            App(
                label=label,
                directory=Path(directory) if directory else root / label,
                tables=tuple(sorted(tables_by_app.get(label, ()))),
                source=spec.source if spec else ("default" if label == default else "folder"),
            )
        )
    for app in apps:
        _check_folder(app.directory, f"the migrations folder of app {app.label!r}")
    return AppRegistry(apps, {t: c[0] for t, c in claims.items()}, default)


def _check_folder(folder: Path, what: str) -> None:
    """A folder that exists or can be created: neither it nor a parent is a file."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == folder else f"is inside {path}, which is a file"
                raise RollbackError(f"{what} {folder} {where}; choose another folder")
            return


def _suggest_label(word: str, labels: list[str]) -> str:
    close = difflib.get_close_matches(word, labels, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _label_for_class(
    cls: type, table: sa.Table, specs: Mapping[str, AppSpec], default: str
) -> tuple[str, str]:
    label = _explicit_label(cls) or table.info.get("app")
    if label:
        return validate_label(label), f"explicit label on {cls.__name__}"
    module = cls.__module__
    best: AppSpec | None = None
    for spec in specs.values():
        if spec.package and (module == spec.package or module.startswith(spec.package + ".")):
            if best is None or len(spec.package) > len(best.package or ""):
                best = spec
    if best is not None:
        return best.label, f"{cls.__name__} lives in {best.package}"
    return default, f"{cls.__name__} is outside every blueprint"


def _explicit_label(cls: type) -> str | None:
    """``__app_label__`` of the class itself or of an unmapped base (a mixin); a mapped parent's
    label names the parent's table, not the tables a subclass adds in another app."""
    for klass in cls.__mro__:
        if klass is not cls and sa.inspect(klass, raiseerr=False) is not None:
            return None
        if "__app_label__" in vars(klass):
            return vars(klass)["__app_label__"]
    return None


def _has_migrations(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.py"))


def _labels_on_disk(root: Path, taken: frozenset[Path] | set[Path] = frozenset()) -> set[str]:
    """Folders with migrations under the root are apps even when their models are gone;
    a folder that is already some app's configured directory is not another app."""
    if not root.is_dir():
        return set()
    return {
        child.name
        for child in root.iterdir()
        if child.is_dir() and LABEL_RE.match(child.name) and _has_migrations(child)
        and child.resolve() not in taken
    }
