"""The documentation site (docs/, mkdocs.yml): it builds without warnings, its references cover
every command, option, setting and exit code, and the getting-started page is true.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from flask_rollback import errors
from flask_rollback.cli import db_group
from flask_rollback.settings import CONFIG_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: A command section of docs/commands.md for a command that is not there yet says so.
PLANNED = "**Planned.**"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def sections(text: str, level: str = "## ") -> dict[str, str]:
    """Each ``level`` heading of a page (without backquotes) and the text up to the next one."""
    found: dict[str, str] = {}
    heading = None
    for line in text.splitlines(keepends=True):
        if line.startswith(level):
            heading = line[len(level) :].strip().strip("`")
            found[heading] = ""
        elif heading is not None:
            found[heading] += line
    return found


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row of a page (header and separator rows included)."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.lstrip().startswith("|")
    ]


# -- the build --------------------------------------------------------------------------------


def test_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if "WARNING" in line], output
    assert (tmp_path / "site" / "getting-started" / "index.html").is_file()


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for path in DOCS.glob("*.md"):
        assert f": {path.name}" in nav, f"{path.name} is not in mkdocs.yml's nav"


def test_readme_links_into_docs_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "README.md links to no docs page"
    for link in links:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"


# -- references -------------------------------------------------------------------------------


def test_every_command_and_option_is_in_commands_page() -> None:
    text = page("commands.md")
    documented = sections(text)
    intro = text.split("\n## ", 1)[0]
    for param in db_group.params:
        for opt in [*param.opts, *param.secondary_opts]:
            assert f"`{opt}" in intro, f"group option {opt} is not documented in docs/commands.md"
    for name, command in db_group.commands.items():
        assert name in documented, f"'flask db {name}' has no '## {name}' section in docs/commands.md"
        body = documented[name]
        assert PLANNED not in body, f"'flask db {name}' exists: remove {PLANNED} from its section"
        for param in command.params:
            if isinstance(param, click.Argument):
                assert param.human_readable_name in body, (
                    f"argument {param.human_readable_name} of 'flask db {name}' is not documented"
                )
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                assert re.search(rf"`[^`]*{re.escape(opt)}\b", body), (
                    f"option {opt} of 'flask db {name}' is not documented in its section"
                )
    for name, body in documented.items():
        if name not in db_group.commands and " " not in name:
            assert PLANNED in body, f"docs/commands.md documents 'flask db {name}', which does not exist"


def test_every_setting_is_in_configuration_page() -> None:
    rows = {row[0].strip("`"): row for row in table_rows(page("configuration.md"))}
    for name in Settings.option_names():
        key = CONFIG_PREFIX + name.upper()
        assert key in rows, f"{key} is not in docs/configuration.md's table"
        default = getattr(Settings(), name)
        shown = "`{}`".format("{}" if default == {} else repr(default).strip("'"))
        if isinstance(default, float):
            shown = f"`{default:g}`"
        assert rows[key][1] == shown, f"{key}: the table says {rows[key][1]}, the default is {shown}"
        assert rows[key][2], f"{key} has no meaning in docs/configuration.md"
    assert set(rows) - {"key", "---"} == {CONFIG_PREFIX + n.upper() for n in Settings.option_names()}


def test_every_exit_code_is_in_exit_codes_page() -> None:
    constants = {name: value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    rows = {row[1].strip("`"): row for row in table_rows(page("exit-codes.md")) if len(row) > 2}
    for name, value in constants.items():
        assert name in rows, f"{name} is not in docs/exit-codes.md's table"
        assert rows[name][0] == str(value), f"{name} is {value}, the table says {rows[name][0]}"
    assert set(rows) - {"constant", "---"} == set(constants)


# -- getting started, replayed ----------------------------------------------------------------

#: What changes from run to run: times (with a zone once shown), durations.
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: ?UTC[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"\(\d+(?:\.\d+)? s\)"), "(<seconds>)"),
]


@dataclass
class Step:
    """A file the page writes, or a command it runs with the output it shows."""

    path: str | None = None
    content: str = ""
    command: str | None = None
    exit_code: int = 0
    output: str = ""


def getting_started_steps() -> list[Step]:
    """Python blocks starting ``# path.py`` are files; ``$`` lines of console blocks commands."""
    steps: list[Step] = []
    for kind, body in re.findall(r"^```(\w+)\n(.*?)^```$", page("getting-started.md"), re.M | re.S):
        first = body.split("\n", 1)[0]
        if kind == "python" and re.fullmatch(r"# [\w/]+\.py", first):
            steps.append(Step(path=first[2:], content=body))
        elif kind == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    command, _, comment = line[2:].partition("  #")
                    code = re.search(r"exits (\d+)", comment)
                    steps.append(Step(command=command.strip(), exit_code=int(code[1]) if code else 0))
                else:
                    steps[-1].output += line + "\n"
    return steps


def normalized(text: str) -> list[str]:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return [line.rstrip() for line in text.rstrip("\n").splitlines()]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; ``...`` in an expected line stands for anything (a user, a host)."""
    return len(expected) == len(actual) and all(
        re.fullmatch(".*?".join(map(re.escape, want.split("..."))), got)
        for want, got in zip(expected, actual)
    )


def test_getting_started_page_is_what_the_commands_print(tmp_path: Path) -> None:
    steps = getting_started_steps()
    assert sum(step.command is not None for step in steps) > 10
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", NO_COLOR="1", COLUMNS="200")
    for step in steps:
        if step.path is not None:
            (tmp_path / step.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / step.path).write_text(step.content, encoding="utf-8")
            continue
        assert step.command is not None
        if step.command.startswith("export "):
            key, _, value = step.command[len("export ") :].partition("=")
            env[key] = value
            continue
        argv = shlex.split(step.command)
        assert argv[0] == "flask", f"the page runs {step.command!r}: only flask commands are replayed"
        done = subprocess.run(
            [sys.executable, "-m", *argv], cwd=tmp_path, env=env, timeout=300,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert done.returncode == step.exit_code, (step.command, done.stdout)
        expected, actual = normalized(step.output), normalized(done.stdout)
        assert matches(expected, actual), (
            f"docs/getting-started.md shows for '$ {step.command}':\n"
            + "\n".join(expected) + "\nbut it prints:\n" + "\n".join(actual)
        )


@pytest.mark.parametrize("line, same", [
    ("   1  applied  <time>  1 migration v2  ...", "   1  applied  <time>  1 migration v2  root@vm"),
    ("Created migrations/env.py", "Created migrations/env.py"),
])
def test_replay_comparison_allows_only_the_ellipsis(line: str, same: str) -> None:
    assert matches([line], [same])
    assert not matches([line], [same + " and more" if "..." not in line else "   2" + same[4:]])
    assert not matches([line], [same, "an extra line"])
