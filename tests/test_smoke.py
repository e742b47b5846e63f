"""The issue's walkthrough end to end, on SQLite and PostgreSQL."""

from pathlib import Path

from tests.projects import new_project


def test_walkthrough(tmp_path: Path, db_url: str) -> None:
    project = new_project(tmp_path, db_url)
    assert project.db("init").exit_code == 0
    result = project.db("makemigrations")
    assert result.exit_code == 0, result.output
    assert project.files("accounts") == ["0001_initial.py"]
    assert project.files("blog") == ["0001_initial.py"]
    blog = (project.migrations / "blog" / "0001_initial.py").read_text()
    accounts = (project.migrations / "accounts" / "0001_initial.py").read_text()
    accounts_rev = accounts.split("revision: str = ")[1].split("\n")[0].strip("'\"")
    depends_line = next(line for line in blog.splitlines() if line.startswith("depends_on"))
    assert accounts_rev in depends_line
    result = project.db("upgrade")
    assert result.exit_code == 0, result.output
    assert {"users", "posts"} <= project.tables()
    result = project.db("showmigrations")
    assert " [X] 0001_initial" in result.output
    result = project.db("downgrade", "blog", "zero")
    assert result.exit_code == 0, result.output
    assert "posts" not in project.tables() and "users" in project.tables()
