"""``flask db graph``: the migration graph as Mermaid and as Graphviz DOT, checked by Graphviz's
own ``dot`` (Debian's graphviz package) and, for Mermaid, line by line against its syntax rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flask_rollback.errors import EXIT_ERROR
from tests.projects import Project, new_project, write_migration

REPO = Path(__file__).parents[1]
#: Mermaid ids drawn here: letters, digits and underscores, never starting a link token.
MERMAID_ID = r"[A-Za-z][A-Za-z0-9_]*"
NODE_RE = re.compile(r'^ {8}(m_\w+)(\["([^"]*)"\]|\{\{"([^"]*)"\}\})$')
EDGE_RE = re.compile(rf"^ {{4}}({MERMAID_ID}) (-->|-\.->) ({MERMAID_ID})$")


@pytest.fixture
def branched(tmp_path: Path, sqlite_url: str) -> Project:
    """accounts a1 <- a2; blog b1 <- (b2a, b2b) <- b3 (a merge), b2b depends on accounts' a2."""
    project = new_project(tmp_path / "project", sqlite_url)
    assert project.run("init").returncode == 0
    table = lambda name: f'op.create_table("{name}", sa.Column("id", sa.Integer, primary_key=True))'  # noqa: E731
    drop = lambda name: f'op.drop_table("{name}")'  # noqa: E731
    write_migration(project, "accounts", "0001_initial.py", "a1", None, table("users"), drop("users"),
                    header="branch_labels = ('accounts',)")
    write_migration(project, "accounts", "0002_groups.py", "a2", "a1", table("groups"), drop("groups"))
    write_migration(project, "blog", "0001_initial.py", "b1", None, table("posts"), drop("posts"),
                    header="branch_labels = ('blog',)")
    write_migration(project, "blog", "0002_tags.py", "b2a", "b1", table("tags"), drop("tags"))
    write_migration(project, "blog", "0002_authors.py", "b2b", "b1", table("authors"), drop("authors"),
                    header="depends_on = 'a2'")
    write_migration(project, "blog", "0003_merge.py", "b3", ("b2a", "b2b"), "pass")
    return project


def mermaid_parts(text: str) -> tuple[dict[str, str], set[tuple[str, str, str]], dict[str, str], dict[str, set[str]]]:
    """(node id -> label, edges (from, arrow, to), node id -> its subgraph, class -> node ids);
    any line that is not valid in the shapes this command writes fails the test."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    nodes: dict[str, str] = {}
    edges: set[tuple[str, str, str]] = set()
    home: dict[str, str] = {}
    classes: dict[str, set[str]] = {}
    subgraph = None
    for line in lines[1:]:
        if found := re.match(r'^ {4}subgraph (app_\w+)\["([^"]*)"\]$', line):
            assert subgraph is None
            subgraph = found.group(2)
        elif line == "    end":
            assert subgraph is not None
            subgraph = None
        elif found := NODE_RE.match(line):
            assert subgraph is not None
            nodes[found.group(1)] = found.group(3) or found.group(4)
            home[found.group(1)] = subgraph
        elif found := EDGE_RE.match(line):
            edges.add(found.groups())
        elif found := re.match(r"^ {4}classDef (applied|pending) [\w:#,.\- ]+$", line):
            classes.setdefault(found.group(1), set())
        elif found := re.match(r"^ {4}class ((?:m_\w+,)*m_\w+) (applied|pending)$", line):
            classes[found.group(2)] |= set(found.group(1).split(","))
        else:
            pytest.fail(f"not a line this Mermaid flowchart should hold: {line!r}")
    assert subgraph is None
    for source, _arrow, target in edges:
        assert source in nodes and target in nodes, (source, target)
    assert all(name != "end" for name in nodes)
    return nodes, edges, home, classes


def render_dot(text: str, tmp_path: Path) -> str:
    """The SVG Graphviz's ``dot`` makes of ``text``; a DOT syntax error (even a warning) fails."""
    assert shutil.which("dot"), "Graphviz's dot is needed (Debian: apt-get install graphviz)"
    result = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "<svg" in result.stdout
    return result.stdout


def test_mermaid_has_every_node_edge_and_merge(branched: Project) -> None:
    result = branched.db("graph")
    assert result.exit_code == 0, result.output
    nodes, edges, home, classes = mermaid_parts(result.output)
    assert nodes == {
        "m_a1": "accounts.0001_initial", "m_a2": "accounts.0002_groups", "m_b1": "blog.0001_initial",
        "m_b2a": "blog.0002_tags", "m_b2b": "blog.0002_authors", "m_b3": "blog.0003_merge",
    }
    assert home == {"m_a1": "accounts", "m_a2": "accounts", "m_b1": "blog", "m_b2a": "blog",
                    "m_b2b": "blog", "m_b3": "blog"}
    assert edges == {
        ("m_a1", "-->", "m_a2"), ("m_b1", "-->", "m_b2a"), ("m_b1", "-->", "m_b2b"),
        ("m_b2a", "-->", "m_b3"), ("m_b2b", "-->", "m_b3"), ("m_a2", "-.->", "m_b2b"),
    }
    assert '        m_b3{{"blog.0003_merge"}}' in result.output.splitlines()  # the merge point
    assert classes == {}  # the database was not read


def test_applied_marks_what_the_version_table_says(branched: Project) -> None:
    assert branched.db("upgrade", "accounts").exit_code == 0
    result = branched.db("graph", "--applied")
    assert result.exit_code == 0, result.output
    _nodes, _edges, _home, classes = mermaid_parts(result.output)
    assert classes == {"applied": {"m_a1", "m_a2"}, "pending": {"m_b1", "m_b2a", "m_b2b", "m_b3"}}


def test_one_app_brings_what_it_depends_on(branched: Project) -> None:
    result = branched.db("graph", "blog")
    nodes, edges, home, _classes = mermaid_parts(result.output)
    assert set(nodes) == {"m_b1", "m_b2a", "m_b2b", "m_b3", "m_a2"}  # a2: blog depends on it
    assert home["m_a2"] == "accounts" and ("m_a2", "-.->", "m_b2b") in edges
    assert mermaid_parts(branched.db("graph", "accounts").output)[0].keys() == {"m_a1", "m_a2"}


def test_dot_renders_with_graphviz(branched: Project, tmp_path: Path) -> None:
    assert branched.db("upgrade", "accounts").exit_code == 0
    for args in (("graph", "--format", "dot"), ("graph", "--format", "dot", "--applied")):
        result = branched.db(*args)
        assert result.exit_code == 0, result.output
        svg = render_dot(result.output, tmp_path)
        for label in ("accounts.0002_groups", "blog.0002_authors", "blog.0003_merge", "cluster_blog"):
            assert label in svg
        # edges: dot names each "<tail>&#45;&gt;<head>"
        for edge in ("a1&#45;&gt;a2", "b2a&#45;&gt;b3", "b2b&#45;&gt;b3", "a2&#45;&gt;b2b"):
            assert f"<title>{edge}</title>" in svg
    assert 'shape=hexagon' in branched.db("graph", "--format", "dot").output


def test_example_app_graph_renders(tmp_path: Path) -> None:
    """The README's picture: the example app's graph, read from its files alone."""
    env_root = tmp_path / "example"
    shutil.copytree(REPO / "example_app", env_root / "example_app")
    shutil.copytree(REPO / "migrations", env_root / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    run = lambda *args: subprocess.run(  # noqa: E731
        ["python3", "-m", "flask", "--app", "example_app", "db", "graph", *args],
        cwd=env_root, capture_output=True, text=True, timeout=120,
    )
    dot = run("--format", "dot")
    assert dot.returncode == 0, dot.stderr
    svg = render_dot(dot.stdout, tmp_path)
    for app in ("accounts", "blog", "shop", "analytics"):
        assert f"{app}.0001_initial" in svg
    nodes, edges, _home, _classes = mermaid_parts(run().stdout)
    assert set(nodes.values()) == {f"{app}.0001_initial" for app in ("accounts", "blog", "shop", "analytics")}
    assert {arrow for _source, arrow, _target in edges} == {"-.->"}  # blog and shop depend on accounts


def test_unknown_app_is_one_line(branched: Project) -> None:
    result = branched.run("graph", "nope")
    assert result.returncode == EXIT_ERROR
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Error: unknown app 'nope'") and result.stdout == ""
