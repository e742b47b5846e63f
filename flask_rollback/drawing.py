"""The migration graph as a picture: Mermaid (renders in GitHub and GitLab Markdown) or Graphviz DOT.

Nodes are migrations (``blog.0002_add_tags``), one subgraph (Mermaid) or cluster (DOT) per app;
solid arrows go from a migration's ``down_revision`` to it, dashed ones from a cross-app
``depends_on``; a merge point (several parents) is a hexagon. When the database was read,
applied migrations are filled and pending ones dashed. Built from the revision index only:
nothing here imports a migration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .graph import Migration

#: Node styles, shared by both formats: applied (filled), pending (dashed outline).
APPLIED_FILL = "#c8e6c9"
APPLIED_STROKE = "#2e7d32"
PENDING_STROKE = "#9e9e9e"


@dataclass
class Drawing:
    """What the picture shows: the apps drawn (each with its migrations, in the global order),
    the edges, and (with ``--applied``) which migrations the database has applied."""

    #: App label -> its migrations in the picture (another app's migration a drawn one depends
    #: on is drawn in its own app's box).
    apps: dict[str, list[Migration]]
    #: (down_revision, revision): the app's own chain.
    parents: list[tuple[str, str]] = field(default_factory=list)
    #: (depended-on revision, revision): cross-app ``depends_on``.
    dependencies: list[tuple[str, str]] = field(default_factory=list)
    #: The applied revisions, or None when the database was not read.
    applied: set[str] | None = None

    def merges(self) -> set[str]:
        """Revisions with more than one ``down_revision``: merge points."""
        counts: dict[str, int] = {}
        for _parent, child in self.parents:
            counts[child] = counts.get(child, 0) + 1
        return {rev for rev, count in counts.items() if count > 1}

    def mermaid(self) -> str:
        """A Mermaid ``flowchart``: ids are ``m_`` + revision id (letters, digits, underscores:
        never a keyword such as ``end``), every label is quoted with ``"`` escaped as an entity."""
        merges = self.merges()
        lines = ["flowchart TB"]
        for label, migrations in self.apps.items():
            lines.append(f'    subgraph app_{label}["{_mermaid_text(label)}"]')
            for migration in migrations:
                text = _mermaid_text(migration.label)
                shape = f'{{{{"{text}"}}}}' if migration.revision in merges else f'["{text}"]'
                lines.append(f"        m_{migration.revision}{shape}")
            lines.append("    end")
        lines += [f"    m_{parent} --> m_{child}" for parent, child in self.parents]
        lines += [f"    m_{dependency} -.-> m_{child}" for dependency, child in self.dependencies]
        if self.applied is not None:
            lines.append(f"    classDef applied fill:{APPLIED_FILL},stroke:{APPLIED_STROKE}")
            lines.append(f"    classDef pending fill:#ffffff,stroke:{PENDING_STROKE},stroke-dasharray:4 3")
            for kind, members in self._by_state().items():
                if members:
                    lines.append(f"    class {','.join('m_' + rev for rev in members)} {kind}")
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        """A Graphviz ``digraph``: every id and label a quoted string (JSON escapes are DOT's)."""
        merges = self.merges()
        state = {rev: kind for kind, members in self._by_state().items() for rev in members}
        lines = [
            "digraph migrations {",
            "    graph [fontname=Helvetica];",
            "    node [shape=box, fontname=Helvetica];",
        ]
        for label, migrations in self.apps.items():
            lines.append(f"    subgraph {_dot_id('cluster_' + label)} {{")
            lines.append(f"        label={_dot_id(label)};")
            for migration in migrations:
                attributes = [f"label={_dot_id(migration.label)}"]
                if migration.revision in merges:
                    attributes.append("shape=hexagon")
                kind = state.get(migration.revision)
                if kind == "applied":
                    attributes.append(f'style=filled, fillcolor="{APPLIED_FILL}", color="{APPLIED_STROKE}"')
                elif kind == "pending":
                    attributes.append(f'style=dashed, color="{PENDING_STROKE}"')
                lines.append(f"        {_dot_id(migration.revision)} [{', '.join(attributes)}];")
            lines.append("    }")
        lines += [f"    {_dot_id(parent)} -> {_dot_id(child)};" for parent, child in self.parents]
        lines += [
            f"    {_dot_id(dependency)} -> {_dot_id(child)} [style=dashed];"
            for dependency, child in self.dependencies
        ]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _by_state(self) -> dict[str, list[str]]:
        drawn = [m.revision for migrations in self.apps.values() for m in migrations]
        if self.applied is None:
            return {}
        return {
            "applied": [rev for rev in drawn if rev in self.applied],
            "pending": [rev for rev in drawn if rev not in self.applied],
        }


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: ``#`` and ``"`` as Mermaid's entity codes."""
    return text.replace("#", "#35;").replace('"', "#quot;")


def _dot_id(text: str) -> str:
    """A DOT quoted string (backslash and double quote escaped, as JSON escapes them)."""
    return json.dumps(text, ensure_ascii=False)
