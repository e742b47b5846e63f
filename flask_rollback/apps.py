"""Where apps are resolved: which app (label) owns each table, by which rule, and where its
migrations live.

A table's app is, in order (docs/apps-and-ownership.md, "Which app owns a model"):

1. an explicit label: ``__app_label__`` on the model, or ``Table(..., info={"app": label})``;
2. the blueprint or ``register_app`` package that is the longest prefix of the model's module
   (two of them tied on a package that holds models is an error: nobody should win silently);
3. for a plain Table (an association table), the app whose package defines it, found as a
   module-level attribute of a loaded module;
4. for a plain Table defined outside every app's package, the single app its foreign keys
   point into (foreign keys into several apps: the default app, which owns that module);
5. otherwise the default app.

A blueprint made in a module of the Flask app's own root package (``app/cli.py`` next to
``app/__init__.py``) claims only that module: the root package is the default app's.

An app's migrations live in ``<root>/<label>/`` unless configured, or unless its package ships
a ``migrations/`` folder of migration files (a reusable app); an installed package's folder is
read-only.
"""

from __future__ import annotations

import ast
import difflib
import importlib.metadata
import os
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from flask import Flask

from .errors import RollbackError
from .settings import Settings
from .wording import shown_path

LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
#: A module-level ``revision = "..."``: what makes a package's ``migrations/`` folder ours.
REVISION_LINE_RE = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*['\"]", re.MULTILINE)

#: The rules that can assign a table to an app, as ``flask db apps`` names them.
EXPLICIT_LABEL = "explicit label"
BLUEPRINT_PACKAGE = "blueprint package"
REGISTERED_PACKAGE = "registered package"
DEFINING_MODULE = "defining module"
FOREIGN_KEYS = "foreign keys"
DEFAULT_APP = "default app"

#: Where an app comes from, as ``flask db apps`` names it.
SOURCE_BLUEPRINT = "blueprint"
SOURCE_REGISTERED = "registered"
SOURCE_DEFAULT = "default"
SOURCE_PLUGIN = "plugin"
SOURCE_LABEL = "explicit label"
SOURCE_FOLDER = "folder-only"

#: Why an app's migrations live where they do.
FOLDER_DEFAULT = "default"
FOLDER_CONFIG = "ROLLBACK_APP_DIRECTORIES"
FOLDER_REGISTERED = "register_app(directory=...)"


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
    """An app someone declared: a blueprint or an explicit registration.

    ``package`` is the import name it claims; with ``module_only`` it claims that module alone,
    not the modules under it (a blueprint made in the Flask app's own root package)."""

    label: str
    package: str | None
    directory: str | None = None
    source: str = SOURCE_BLUEPRINT
    module_only: bool = False
    #: The import name the blueprint was created in, to name it in errors.
    defined_in: str | None = None

    def claims(self, module: str) -> bool:
        if not self.package:
            return False
        return module == self.package or (
            not self.module_only and module.startswith(self.package + ".")
        )

    @property
    def claim_text(self) -> str | None:
        if not self.package:
            return None
        return f"{'module' if self.module_only else 'package'} {self.package}"

    def describe(self) -> str:
        if self.source == SOURCE_REGISTERED:
            return f"register_app({self.label!r})"
        return f"blueprint {self.label!r} (created in {self.defined_in or self.package})"


@dataclass(frozen=True)
class Ownership:
    """Why a table belongs to its app: the rule that decided it and the facts behind it."""

    table: str
    app: str
    rule: str
    reason: str


@dataclass(frozen=True)
class App:
    """A resolved app: its label, migration folder and the tables it owns."""

    label: str
    directory: Path
    tables: tuple[str, ...]
    source: str
    #: Its migrations ship with an installed package: nothing may be written there.
    read_only: bool = False
    #: Why the migrations live in ``directory`` (and why it is read-only, if it is).
    folder_origin: str = FOLDER_DEFAULT
    #: What it claims: ``package X`` or ``module X`` (None: labels and folders only).
    claims: str | None = None
    #: The Flask-SQLAlchemy bind key its tables live on (None: the default bind).
    bind: str | None = None


#: How output and ``--bind`` name the default bind (Flask-SQLAlchemy's key ``None``).
DEFAULT_BIND = "default"


def bind_name(key: str | None) -> str:
    return DEFAULT_BIND if key is None else key


def bind_order(keys: Iterable[str | None]) -> list[str | None]:
    """The order every command visits binds in: the default bind first, then keys sorted."""
    unique = set(keys)
    return ([None] if None in unique else []) + sorted(k for k in unique if k is not None)


class AppRegistry:
    """Apps in a stable order (as declared, then by label) and the table → app map."""

    def __init__(
        self,
        apps: Iterable[App],
        ownership: Mapping[str, Ownership],
        default: str,
    ):
        self._apps = {app.label: app for app in apps}
        self.ownership = dict(ownership)
        self.table_apps = {table: owner.app for table, owner in self.ownership.items()}
        self.default_label = default

    @property
    def labels(self) -> list[str]:
        return list(self._apps)

    def __iter__(self) -> Iterator[App]:
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
                f"unknown app {label!r}{_suggest_label(label, self.labels)}; known apps: {known}"
            ) from None

    def writable(self, label: str) -> App:
        """The app, refusing one whose migrations ship with an installed package."""
        app = self.get(label)
        if app.read_only:
            raise RollbackError(
                f"app {label!r} is read-only: its migrations ship with an installed package "
                f"({shown_path(app.directory)}, {app.folder_origin}); upgrade the package to get new ones"
            )
        return app

    def app_of_table(self, table_name: str) -> str | None:
        return self.table_apps.get(table_name)

    def directories(self) -> dict[str, Path]:
        return {app.label: app.directory for app in self._apps.values()}

    @property
    def binds(self) -> list[str | None]:
        """The binds holding apps, in visiting order; the default bind always (a project
        without apps yet still has its database)."""
        return bind_order([None, *(app.bind for app in self._apps.values())])

    def for_bind(self, key: str | None) -> AppRegistry:
        """The apps of one bind and the ownership of their tables."""
        apps = [app for app in self._apps.values() if app.bind == key]
        labels = {app.label for app in apps}
        owned = {table: owner for table, owner in self.ownership.items() if owner.app in labels}
        return AppRegistry(apps, owned, self.default_label)


# -- what blueprints claim ----------------------------------------------------------------------


def blueprint_specs(flask_app: Flask) -> list[AppSpec]:
    """Each registered blueprint and the package (or module) its models live in.

    A blueprint registered under several names counts once, under its own name if that is
    one of them: the same package claimed twice by one blueprint is no conflict."""
    root_package = _root_package(flask_app.import_name)
    chosen: dict[int, str] = {}
    for name, blueprint in flask_app.blueprints.items():
        if id(blueprint) not in chosen or name == blueprint.name:
            chosen[id(blueprint)] = name
    specs = []
    for name, blueprint in flask_app.blueprints.items():
        if chosen[id(blueprint)] != name:
            continue
        package, module_only = _claim_of(blueprint.import_name, root_package)
        specs.append(
            AppSpec(
                label=name, package=package, module_only=module_only,
                defined_in=blueprint.import_name,
            )
        )
    return specs


def _root_package(import_name: str) -> str | None:
    """The package the Flask app was created in (None: a top-level module or script)."""
    module = sys.modules.get(import_name)
    if module is not None and hasattr(module, "__path__"):
        return import_name
    return import_name.rsplit(".", 1)[0] if "." in import_name else None


def _claim_of(import_name: str, root_package: str | None) -> tuple[str, bool]:
    """``(import name, module_only)`` a blueprint claims.

    Made in ``pkg/views.py``: the whole ``pkg`` (models sit beside the views). Made in a module
    of the Flask app's root package, or in its ``__init__``: that module alone, since the root
    package holds everything else of the project."""
    if import_name == root_package:
        return import_name, True
    module = sys.modules.get(import_name)
    if module is None or hasattr(module, "__path__") or "." not in import_name:
        return import_name, False
    parent = import_name.rsplit(".", 1)[0]
    if parent == root_package:
        return import_name, True
    return parent, False


def project_home(flask_app: Flask) -> Path:
    """The folder the Flask app's top-level package (or module) was imported from."""
    top = sys.modules.get(flask_app.import_name.split(".")[0])
    location = getattr(top, "__file__", None)
    if not location:
        return Path(flask_app.root_path).resolve()
    path = Path(location).resolve()
    return path.parent.parent if hasattr(top, "__path__") else path.parent


# -- resolving ----------------------------------------------------------------------------------


def resolve_apps(
    metadata: sa.MetaData | Sequence[sa.MetaData],
    mapped_classes: Iterable[type],
    specs: Iterable[AppSpec],
    settings: Settings,
    project_dirs: Sequence[Path] = (),
    bind_keys: Iterable[str | None] = (None,),
) -> AppRegistry:
    """Assign every table of ``metadata`` (one MetaData per Flask-SQLAlchemy bind) to an app,
    each app to its bind, and build the registry.

    ``project_dirs``: folders of the project itself (besides the one holding the migrations
    root); a package's shipped migrations outside them are an installed package's.
    ``bind_keys``: the binds the app configures (SQLALCHEMY_BINDS keys and None)."""
    default = validate_label(settings.default_app, "default app label")
    metadatas = [metadata] if isinstance(metadata, sa.MetaData) else list(metadata)
    table_binds = _table_binds(metadatas)
    claimants = _claimants(list(specs))
    claims = _default_app_per_bind(
        _assign_tables(metadatas, list(mapped_classes), claimants, default), table_binds, default
    )
    owners = {ownership.app for ownership in claims.values()}
    bind_defaults = {
        ownership.app for table, ownership in claims.items()
        if ownership.app == table_binds.get(table) and ownership.rule != EXPLICIT_LABEL
    }
    for label in owners:
        validate_label(label)
    tables_by_app: dict[str, list[str]] = {}
    for ownership in claims.values():
        tables_by_app.setdefault(ownership.app, []).append(ownership.table)

    root = Path(settings.directory)
    _check_folder(root, "the migrations folder")
    homes = [Path(root).resolve().parent, *(Path(d).resolve() for d in project_dirs)]
    by_label = {spec.label: spec for spec in claimants}
    folders = {
        label: _folder_of(label, by_label.get(label), settings, root, homes)
        for label in [*by_label, *settings.app_directories]
    }
    labels: list[str] = [
        spec.label for spec in claimants if spec.label in owners or spec.source == SOURCE_REGISTERED
    ]
    if default in owners and default not in labels:
        labels.append(default)
    labels += sorted(owners - set(labels))
    # Apps whose own folder (configured, or shipped with their package) still holds
    # migrations count even without models.
    labels += sorted(
        label for label, folder in folders.items()
        if label not in labels and folder.origin != FOLDER_DEFAULT and _has_migrations(folder.path)
    )
    taken = {
        folder.path.resolve() for folder in folders.values() if folder.origin != FOLDER_DEFAULT
    }
    labels += sorted(_labels_on_disk(root, taken, known=set(labels)))

    unknown = sorted(set(settings.app_directories) - set(labels))
    if unknown:
        raise RollbackError(
            f"ROLLBACK_APP_DIRECTORIES names app {unknown[0]!r}, which has no models and no "
            f"migrations{_suggest_label(unknown[0], labels)}; known apps: "
            f"{', '.join(labels) or 'none yet'}"
        )

    binds = _app_binds(labels, tables_by_app, table_binds, settings, list(bind_keys))
    apps = []
    for label in labels:
        validate_label(label)
        spec = by_label.get(label)
        folder = folders.get(label) or _Folder(root / label, FOLDER_DEFAULT, False)
        apps.append(
            App(
                label=label,
                directory=folder.path,
                tables=tuple(sorted(tables_by_app.get(label, ()))),
                source=_source(label, spec, folder, {default, *bind_defaults}, label in owners),
                read_only=folder.read_only,
                folder_origin=folder.origin,
                claims=spec.claim_text if spec else None,
                bind=binds[label],
            )
        )
    for app in apps:
        _check_folder(app.directory, f"the migrations folder of app {app.label!r}")
    return AppRegistry(apps, claims, default)


# -- binds ----------------------------------------------------------------------------------------


def _bind_of(metadata: sa.MetaData) -> str | None:
    """Flask-SQLAlchemy 3.1 routes a table by its MetaData: ``db.metadatas[key]`` carries
    ``info["bind_key"]`` (``__bind_key__`` on a model, ``db.Table(..., bind_key=...)``)."""
    return metadata.info.get("bind_key")


def _table_binds(metadatas: list[sa.MetaData]) -> dict[str, str | None]:
    """``{table name: bind key}``; refuses what would make a bind's migrations wrong: a table
    name on two binds, a table whose ``info["bind_key"]`` (Flask-SQLAlchemy 2's spelling) is
    not the bind its MetaData routes it to, a foreign key from one bind into another."""
    binds: dict[str, str | None] = {}
    for metadata in metadatas:
        key = _bind_of(metadata)
        for table in metadata.tables.values():
            if table.name in binds and binds[table.name] != key:
                raise RollbackError(
                    f"table {table.name!r} is defined on two binds, {bind_name(binds[table.name])!r} "
                    f"and {bind_name(key)!r}: flask-rollback needs one name per table across "
                    "binds; rename one of them (__tablename__)"
                )
            said = table.info.get("bind_key", key)
            if said != key:
                raise RollbackError(
                    f"table {table.name!r} says info={{'bind_key': {said!r}}} but is defined on "
                    f"bind {bind_name(key)!r} (Flask-SQLAlchemy 3 routes a table by its MetaData): "
                    f"define it with __bind_key__ = {said!r} or db.Table(..., bind_key={said!r})"
                )
            binds[table.name] = key
    for metadata in metadatas:
        for table in metadata.tables.values():
            for fk in table.foreign_keys:
                target = fk.target_fullname.split(".")
                target_table = target[-2] if len(target) >= 2 else target[0]
                if target_table in binds and binds[target_table] != binds[table.name]:
                    raise RollbackError(
                        f"foreign key {table.name}.{fk.parent.name} -> {fk.target_fullname} crosses "
                        f"binds: table {table.name!r} is on bind {bind_name(binds[table.name])!r}, "
                        f"{target_table!r} on bind {bind_name(binds[target_table])!r}; a database "
                        "cannot enforce a key into another database: store the id as a plain column"
                    )
    return binds


def _default_app_per_bind(
    claims: Mapping[str, Ownership], table_binds: Mapping[str, str | None], default: str
) -> dict[str, Ownership]:
    """Models outside every blueprint on another bind (a plain ``models.py`` with a few
    ``__bind_key__ = "events"`` classes) form that bind's default app, labelled by the bind key,
    instead of making the default app span two databases. A label someone chose stays."""
    moved: dict[str, Ownership] = {}
    for table, ownership in claims.items():
        key = table_binds.get(table)
        if key is None or ownership.app != default or ownership.rule == EXPLICIT_LABEL:
            moved[table] = ownership
            continue
        label = validate_label(key, f"app label for the models of bind {key!r} outside every app (the bind key)")
        moved[table] = Ownership(
            table, label, ownership.rule, f"{ownership.reason}; on bind {key!r}, whose default app is {label!r}"
        )
    return moved


def _app_binds(
    labels: list[str],
    tables_by_app: Mapping[str, list[str]],
    table_binds: Mapping[str, str | None],
    settings: Settings,
    bind_keys: list[str | None],
) -> dict[str, str | None]:
    """Each app's bind: the bind of its tables (one only), else ROLLBACK_APP_BINDS, else the
    default bind. ROLLBACK_APP_BINDS must name an app and a configured bind, and agree with
    the app's tables (the tables are where the app's queries go)."""
    configured = dict(settings.app_binds)
    known = ", ".join(bind_name(key) for key in bind_order(bind_keys))
    for label, key in configured.items():
        if label not in labels:
            raise RollbackError(
                f"ROLLBACK_APP_BINDS names app {label!r}, which has no models and no "
                f"migrations{_suggest_label(label, labels)}; known apps: {', '.join(labels) or 'none yet'}"
            )
        if key not in bind_keys:
            close = difflib.get_close_matches(str(key), [k for k in bind_keys if k], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RollbackError(
                f"ROLLBACK_APP_BINDS[{label!r}] names bind {key!r}, which is not configured{hint}; "
                f"binds: {known} (add it to SQLALCHEMY_BINDS)"
            )
    binds: dict[str, str | None] = {}
    for label in labels:
        by_bind: dict[str | None, list[str]] = {}
        for table in sorted(tables_by_app.get(label, ())):
            by_bind.setdefault(table_binds.get(table), []).append(table)
        if len(by_bind) > 1:
            spread = "; ".join(
                f"bind {bind_name(key)!r}: {', '.join(tables)}"
                for key, tables in ((k, by_bind[k]) for k in bind_order(by_bind))
            )
            raise RollbackError(
                f"app {label!r} has tables on {len(by_bind)} binds ({spread}); an app lives on one "
                "bind: give its models one __bind_key__, or move some to another app (__app_label__)"
            )
        if by_bind:
            (key,) = by_bind
            if label in configured and configured[label] != key:
                raise RollbackError(
                    f"ROLLBACK_APP_BINDS puts app {label!r} on bind {bind_name(configured[label])!r} "
                    f"but its tables ({', '.join(by_bind[key])}) are on bind {bind_name(key)!r}; "
                    "remove the entry or change the models' __bind_key__"
                )
            binds[label] = key
        else:
            binds[label] = configured.get(label)
    return binds


def _assign_tables(
    metadatas: list[sa.MetaData], mapped_classes: list[type], claimants: list[AppSpec], default: str
) -> dict[str, Ownership]:
    """Every table's app and the rule behind it: mapped classes first, then explicit Table
    labels, then plain tables (which may follow the foreign keys into tables decided before)."""
    deciding = _Owners(claimants, default)

    claims: dict[str, Ownership] = {}

    def claim(ownership: Ownership) -> None:
        previous = claims.get(ownership.table)
        if previous is None:
            claims[ownership.table] = ownership
        elif previous.app != ownership.app:
            raise RollbackError(
                f"table {ownership.table!r} is claimed by two apps: {previous.app!r} "
                f"({previous.reason}) and {ownership.app!r} ({ownership.reason}); give it one "
                "app with __app_label__ or info={'app': ...}"
            )

    for cls in mapped_classes:
        mapper: sa.orm.Mapper[Any] = sa.inspect(cls)
        # A subclass owns only the tables it adds: its parent's table stays the parent's.
        inherited = mapper.inherits.tables if mapper.inherits is not None else []
        for table in mapper.tables:
            if not isinstance(table, sa.Table) or not any(table.metadata is m for m in metadatas):
                continue
            if any(table is parent for parent in inherited):
                continue
            claim(deciding.of_class(cls, table))

    ordered = _referenced_first(metadatas)
    for table in ordered:
        explicit_label = table.info.get("app")
        if explicit_label is not None:
            claim(Ownership(
                table.name, validate_label(explicit_label), EXPLICIT_LABEL,
                f"info={{'app': {explicit_label!r}}} on the Table",
            ))
    plain = [table for table in ordered if table.name not in claims]
    if plain:
        top_levels = {cls.__module__.split(".")[0] for cls in mapped_classes} | {
            spec.package.split(".")[0] for spec in claimants if spec.package
        }
        holders = _module_holders(plain, top_levels)
        for table in plain:
            claim(deciding.of_plain_table(table, holders.get(id(table), []), claims))

    return claims


def _referenced_first(metadatas: list[sa.MetaData]) -> list[sa.Table]:
    """``metadata.sorted_tables`` without its SAWarning on every command when foreign keys form
    a cycle (teams <-> users): such a cycle is legitimate (makemigrations breaks it), and the
    order here only has to put a referenced table first where one can be."""
    ordered = sa.schema.sort_tables_and_constraints(
        sorted((t for m in metadatas for t in m.tables.values()), key=lambda table: table.key)
    )
    return [table for table, _constraints in ordered if table is not None]


def _claimants(specs: list[AppSpec]) -> list[AppSpec]:
    """The specs that claim packages: an explicit registration overrides a blueprint of the
    same label or package."""
    registered = [spec for spec in specs if spec.source == SOURCE_REGISTERED]
    by_label: dict[str, AppSpec] = {}
    for spec in specs:
        if spec.source != SOURCE_REGISTERED and any(
            other.label == spec.label or other.package == spec.package for other in registered
        ):
            continue
        by_label[spec.label] = spec
    return list(by_label.values())


def _source(
    label: str, spec: AppSpec | None, folder: _Folder, defaults: set[str], owns: bool
) -> str:
    """``defaults``: the default app and each other bind's default app (named by its key)."""
    if spec is not None:
        if spec.source == SOURCE_BLUEPRINT and folder.read_only and folder.shipped:
            return SOURCE_PLUGIN
        return spec.source
    if label in defaults:
        return SOURCE_DEFAULT
    return SOURCE_LABEL if owns else SOURCE_FOLDER


class _Owners:
    """Decides the app of one class or plain table from the claimants' packages."""

    def __init__(self, claimants: list[AppSpec], default: str) -> None:
        self.claimants = claimants
        self.default = default

    def candidates(self, module: str) -> list[AppSpec]:
        """The claimants with the longest package containing ``module`` (several: a tie)."""
        matches = [spec for spec in self.claimants if spec.claims(module)]
        if not matches:
            return []
        longest = max(len(spec.package or "") for spec in matches)
        return [spec for spec in matches if len(spec.package or "") == longest]

    def owner(self, module: str, what: str) -> AppSpec | None:
        """The claimant of ``module``; two tied claimants are an error naming both."""
        found = self.candidates(module)
        if len(found) > 1:
            first = found[0]
            names = ", ".join(spec.describe() for spec in found[:-1])
            raise RollbackError(
                f"{names} and {found[-1].describe()} {'both' if len(found) == 2 else 'all'} "
                f"claim {first.claim_text}, which holds "
                f"{what}; give its models one app: __app_label__ = {first.label!r} on them, or "
                f"rollback.register_app({first.label!r}, import_name={first.package!r})"
            )
        return found[0] if found else None

    def of_class(self, cls: type, table: sa.Table) -> Ownership:
        explicit = _explicit_label(cls)
        if explicit:
            return Ownership(
                table.name, validate_label(explicit), EXPLICIT_LABEL,
                f"__app_label__ = {explicit!r} on {cls.__name__}",
            )
        info_label = table.info.get("app")
        if info_label:
            return Ownership(
                table.name, validate_label(info_label), EXPLICIT_LABEL,
                f"info={{'app': {info_label!r}}} on the table of {cls.__name__}",
            )
        module = cls.__module__
        spec = self.owner(module, f"table {table.name!r} ({cls.__name__})")
        if spec is None:
            return Ownership(
                table.name, self.default, DEFAULT_APP,
                f"{cls.__name__} is defined in {module}, outside every app's package",
            )
        return Ownership(
            table.name, spec.label, _rule_of(spec),
            f"{cls.__name__} is defined in {module}, inside {spec.claim_text} of {spec.describe()}",
        )

    def of_plain_table(
        self, table: sa.Table, holders: list[tuple[str, str]], claims: Mapping[str, Ownership]
    ) -> Ownership:
        """An association table: its defining module's app, else its foreign keys' app."""
        module = self._defining_module(holders)
        spec = self.owner(module, f"table {table.name!r}") if module else None
        if spec is not None:
            return Ownership(
                table.name, spec.label, DEFINING_MODULE,
                f"defined in {module}, inside {spec.claim_text} of {spec.describe()}",
            )
        where = (
            f"defined in {module}, outside every app's package" if module
            else "no loaded module holds it at module level"
        )
        targets = sorted({
            claims[fk.column.table.name].app
            for fk in table.foreign_keys
            if fk.column.table.name in claims
        })
        if len(targets) == 1:
            return Ownership(
                table.name, targets[0], FOREIGN_KEYS,
                f"its foreign keys point into app {targets[0]!r} only; {where}",
            )
        if not targets:
            return Ownership(table.name, self.default, DEFAULT_APP, f"no foreign keys into an app; {where}")
        if module is None:
            raise RollbackError(
                f"cannot decide the app of table {table.name!r}: its foreign keys point into "
                f"apps {', '.join(targets)} and {where}; set Table(..., info={{'app': LABEL}}), "
                "or assign it to a module-level name in the package of the app that owns it"
            )
        return Ownership(
            table.name, self.default, DEFINING_MODULE,
            f"its foreign keys point into apps {', '.join(targets)}; {where}",
        )

    def _defining_module(self, holders: list[tuple[str, str]]) -> str | None:
        """The module that defines a table, from the modules holding it at module level: when
        they all fall in one app, any of them; otherwise the one that assigns it (the others
        import it). None when that leaves no single app."""
        for candidates in (holders, [h for h in holders if _assigns(*h)]):
            apps = {tuple(spec.label for spec in self.candidates(module)) for module, _ in candidates}
            if len(apps) == 1:
                return min(module for module, _ in candidates)
        return None


def _rule_of(spec: AppSpec) -> str:
    return REGISTERED_PACKAGE if spec.source == SOURCE_REGISTERED else BLUEPRINT_PACKAGE


def _explicit_label(cls: type) -> str | None:
    """``__app_label__`` of the class itself or of an unmapped base (a mixin); a mapped parent's
    label names the parent's table, not the tables a subclass adds in another app."""
    mro = cls.__mro__
    found = next((i for i, klass in enumerate(mro) if "__app_label__" in vars(klass)), None)
    if found is None:  # the common case: no class to inspect
        return None
    if any(sa.inspect(klass, raiseerr=False) is not None for klass in mro[1:found + 1]):
        return None
    return vars(mro[found])["__app_label__"]


def _module_holders(tables: list[sa.Table], top_levels: set[str]) -> dict[int, list[tuple[str, str]]]:
    """``{id(table): [(module, attribute), ...]}``: the project's loaded modules (those under the
    models' and apps' top-level packages) that hold each table at module level."""
    wanted = {id(table) for table in tables}
    found: dict[int, list[tuple[str, str]]] = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, ModuleType) or name.split(".")[0] not in top_levels:
            continue
        for attribute, value in list(vars(module).items()):
            if id(value) in wanted and isinstance(value, sa.Table):
                found.setdefault(id(value), []).append((name, attribute))
    return found


def _assigns(module_name: str, attribute: str) -> bool:
    """Does the module's source assign ``attribute`` at module level (rather than import it)?"""
    location = getattr(sys.modules.get(module_name), "__file__", None)
    if not location or not location.endswith(".py"):
        return False
    try:
        tree = ast.parse(Path(location).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == attribute for target in targets):
            return True
    return False


# -- migration folders --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Folder:
    """An app's migrations folder and why it is that one."""

    path: Path
    origin: str
    read_only: bool
    #: Found in the app's package (``<package>/migrations``), not configured.
    shipped: bool = False


def _folder_of(
    label: str, spec: AppSpec | None, settings: Settings, root: Path, homes: list[Path]
) -> _Folder:
    """Configured folder, else ``register_app(directory=...)``, else the package's own
    ``migrations/`` (read-only when the package is installed), else ``<root>/<label>``."""
    configured = settings.app_directories.get(label)
    if configured:
        return _Folder(Path(configured), FOLDER_CONFIG, not _writable(Path(configured)))
    if spec is not None and spec.directory:
        return _Folder(Path(spec.directory), FOLDER_REGISTERED, not _writable(Path(spec.directory)))
    shipped = _shipped_migrations(spec, root) if spec is not None else None
    if shipped is not None:
        assert spec is not None and spec.package
        installed = _installed(shipped, spec.package, homes)
        origin = f"shipped with package {spec.package}" + (f" ({installed})" if installed else "")
        return _Folder(shipped, origin, installed is not None, shipped=True)
    return _Folder(root / label, FOLDER_DEFAULT, False)


def _shipped_migrations(spec: AppSpec, root: Path) -> Path | None:
    """``<package>/migrations`` when it holds migration files (not an Alembic root of its own,
    not the project's migrations root)."""
    if not spec.package or spec.module_only:
        return None
    module = sys.modules.get(spec.package)
    for base in getattr(module, "__path__", None) or ():
        folder = Path(base) / "migrations"
        if not folder.is_dir() or (folder / "env.py").exists() or folder.resolve() == root.resolve():
            continue
        if _has_migrations(folder, declared=True):
            return folder
    return None


def _installed(folder: Path, package: str, homes: list[Path]) -> str | None:
    """Why a package's shipped folder belongs to an installation rather than to the project;
    None when it is the project's own (writable, in the project, installed by nobody)."""
    if not _writable(folder):
        return "not writable"
    resolved = folder.resolve()
    if {"site-packages", "dist-packages"} & set(resolved.parts) or any(
        resolved.is_relative_to(site) for site in _site_dirs()
    ):
        return "in site-packages"
    distribution = _distribution_of(resolved, package)
    if distribution:
        return f"installed by {distribution}"
    if not any(resolved.is_relative_to(home) for home in homes):
        return "outside the project"
    return None


def _site_dirs() -> set[Path]:
    paths = sysconfig.get_paths()
    return {Path(paths[key]).resolve() for key in ("purelib", "platlib") if key in paths}


def _distribution_of(folder: Path, package: str) -> str | None:
    """The installed distribution whose RECORD lists files of ``folder`` (``pip install``,
    also ``--target``); an editable install lists none of its sources, so it never counts."""
    entry = folder.parent.parents[package.count(".")]  # the sys.path entry holding the package
    relative = folder.relative_to(entry).parts
    for distribution in importlib.metadata.distributions(path=[str(entry)]):
        for file in distribution.files or ():
            if PurePosixPath(file).parts[: len(relative)] == relative:
                return f"{distribution.metadata['Name']} {distribution.version}"
    return None


def _writable(folder: Path) -> bool:
    """The folder, or the nearest existing folder above it, accepts new files."""
    for path in (folder, *folder.parents):
        if path.exists():
            return os.access(path, os.W_OK)
    return False


def _check_folder(folder: Path, what: str) -> None:
    """A folder that exists or can be created: neither it nor a parent is a file."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == folder else f"is inside {shown_path(path)}, which is a file"
                raise RollbackError(f"{what} {shown_path(folder)} {where}; choose another folder")
            return


def _suggest_label(word: str, labels: list[str]) -> str:
    close = difflib.get_close_matches(word, labels, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _has_migrations(folder: Path, declared: bool = False) -> bool:
    """Python files in the folder; with ``declared``, one that declares a revision."""
    try:
        entries = os.scandir(folder)
    except OSError:  # absent, not a folder, unreadable
        return False
    with entries:
        files = (
            entry for entry in entries
            if entry.name.endswith(".py") and entry.name != "__init__.py" and entry.is_file()
        )
        if not declared:
            return next(files, None) is not None  # the first one answers: no stat of 10,000 files
        return any(REVISION_LINE_RE.search(Path(entry.path).read_text(errors="replace")) for entry in files)


def _labels_on_disk(
    root: Path,
    taken: frozenset[Path] | set[Path] = frozenset(),
    known: frozenset[str] | set[str] = frozenset(),
) -> set[str]:
    """Folders with migrations under the root are apps even when their models are gone;
    a folder that is already some app's configured directory is not another app. Folders of
    ``known`` labels (apps already) are not looked into: listing a folder of 500 migrations
    costs the kernel a tenth of a millisecond."""
    if not root.is_dir():
        return set()
    return {
        child.name
        for child in root.iterdir()
        if child.name not in known and child.is_dir() and LABEL_RE.match(child.name)
        and _has_migrations(child) and not (taken and child.resolve() in taken)
    }
