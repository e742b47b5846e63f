"""How long ``restore`` takes per row: 10k, 100k and 1M rows, on SQLite and PostgreSQL.

Each case fills a table ``items (id BIGINT PRIMARY KEY, v TEXT)``, copies it into an archive
as ``--archive`` does (``CREATE TABLE ... AS SELECT``, registered in the archive table), then
times ``ArchiveLog.restore`` twice: a column archive over rows whose ``v`` was emptied (the
``UPDATE ... FROM`` path) and a whole-table archive into an empty table (the ``INSERT ...
SELECT`` path). Growth must be flat: the µs per row of 1M close to those of 10k.

    python3 bench/restore.py                      # 10k and 100k, both backends
    python3 bench/restore.py --sizes 10000,100000,1000000 --output bench/restore-results.md

PostgreSQL is a throwaway server started as the test suite does (tests/pgserver.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flask_rollback.archive import ArchiveLog, ArchiveRecord  # noqa: E402
from flask_rollback.database import connect  # noqa: E402
from tests.pgserver import PostgresServer, find_postgres_bin  # noqa: E402


def fill(connection: sa.Connection, rows: int) -> None:
    connection.exec_driver_sql("DROP TABLE IF EXISTS items")
    connection.exec_driver_sql("CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT)")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"INSERT INTO items SELECT g, 'value ' || g FROM generate_series(1, {rows}) g"
        )
    else:
        connection.exec_driver_sql(
            "INSERT INTO items WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
            f"WHERE x < {rows}) SELECT x, 'value ' || x FROM c"
        )


def archived(connection: sa.Connection, log: ArchiveLog, name: str, column: str | None, rows: int) -> ArchiveRecord:
    selected = "id, v" if column else "*"
    connection.exec_driver_sql(f"CREATE TABLE {name} AS SELECT {selected} FROM items")
    now = datetime.now(timezone.utc)
    connection.execute(log.table.insert().values(
        name=name, app="bench", migration="bench.0001", revision="bench0001", direction="down",
        source_table="items", source_column=column, key_columns="id", rows=rows, created_at=now,
    ))
    return ArchiveRecord(name, "bench", "bench.0001", "bench0001", "down", "items", column, ("id",), rows, now)


def timed_restore(url: sa.URL, rows: int, whole_table: bool) -> float:
    log = ArchiveLog("rollback_archives")
    with connect(url) as connection:
        with connection.begin():
            log.table.drop(connection, checkfirst=True)
            for name in sa.inspect(connection).get_table_names():
                if name.startswith("rollback_archives_"):
                    connection.exec_driver_sql(f"DROP TABLE {name}")
            log.table.create(connection)
            fill(connection, rows)
            record = archived(
                connection, log, "rollback_archives_bench_items" + ("" if whole_table else "__v"),
                None if whole_table else "v", rows,
            )
            connection.exec_driver_sql("DELETE FROM items" if whole_table else "UPDATE items SET v = NULL")
        if connection.dialect.name == "postgresql":
            with connection.begin():
                connection.exec_driver_sql("ANALYZE items")
        started = time.perf_counter()
        with connection.begin():
            result = log.restore(connection, record)
        elapsed = time.perf_counter() - started
        assert result.dropped and (result.inserted if whole_table else result.updated) == rows, result
        with connection.begin():
            missing = connection.exec_driver_sql("SELECT count(*) FROM items WHERE v IS NULL").scalar()
        assert missing == 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    options = parser.parse_args()
    sizes = [int(size) for size in options.sizes.split(",")]
    backends = options.backends.split(",")
    lines = ["| backend | archive | rows | seconds | µs per row |", "|---|---|---|---|---|"]
    server = None
    with tempfile.TemporaryDirectory() as folder:
        try:
            urls: dict[str, sa.URL] = {}
            if "sqlite" in backends:
                urls["sqlite"] = sa.make_url(f"sqlite:///{folder}/bench.db")
            if "postgresql" in backends:
                bindir = find_postgres_bin()
                if bindir is None:
                    sys.exit("PostgreSQL 15 binaries not found (see tests/pgserver.py)")
                server = PostgresServer(bindir)
                server.start()
                server.create_database("bench_restore")
                urls["postgresql"] = sa.make_url(server.url("bench_restore"))
            for backend, url in urls.items():
                for whole_table in (False, True):
                    for rows in sizes:
                        seconds = timed_restore(url, rows, whole_table)
                        kind = "whole table (INSERT)" if whole_table else "column (UPDATE)"
                        line = f"| {backend} | {kind} | {rows:,} | {seconds:.2f} | {seconds / rows * 1e6:.1f} |"
                        print(line, flush=True)
                        lines.append(line)
        finally:
            if server is not None:
                server.stop()
    if options.output:
        Path(options.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
