"""Where data loss is decided: refuse a plan that would destroy existing data, or archive it."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from .archive import ArchiveLog, ArchiveSpec
from .dataloss import DataLossError, DataLossReport, assess
from .executor import Progress, RunReport, execute
from .plan import Plan, Step
from .project import Project


class DataGuard:
    """Refuses plans that would destroy existing data, or archives that data as they run."""

    def __init__(self, project: Project, allow_data_loss: bool, archive: bool | None) -> None:
        self.project = project
        self.allow_data_loss = allow_data_loss
        self.archive = project.settings.archive if archive is None else archive
        self.log = ArchiveLog(project.settings.archive_table)

    def decide(self, connection: Connection, plan: Plan, report: DataLossReport) -> list[ArchiveSpec]:
        """Given what ``plan`` would destroy (``assess``): raise unless allowed, or plan the
        archives that keep it."""
        if not report.losses:
            return []
        if self.archive:
            return self.log.plan(connection, report, skip_unarchivable=self.allow_data_loss)
        if self.allow_data_loss:
            return []
        raise DataLossError(
            DataLossReport(report.losses),
            f"{plan.kind} {plan.target} would destroy existing data in "
            f"{len(report.losses)} place(s); nothing was run. Re-run with --archive to keep a "
            "copy you can restore, or with --allow-data-loss",
        )

    def run(
        self, connection: Connection, plan: Plan, progress: Progress | None
    ) -> tuple[RunReport, DataLossReport, list[ArchiveSpec]]:
        """Check, then execute the plan, writing each step's archives in its transaction."""
        report = assess(self.project, connection, plan)
        specs = self.decide(connection, plan, report)
        run = execute(
            self.project, connection, plan, progress, before_step=self.archiver(connection, specs)
        )
        return run, report, specs

    def archiver(
        self, connection: Connection, specs: list[ArchiveSpec]
    ) -> Callable[[Connection, Step], None] | None:
        """The ``before_step`` hook that writes each step's archives (None: nothing to keep)."""
        if not specs:
            return None
        self.log.ensure(connection)
        connection.commit()

        def write_archives(conn: Connection, step: Step) -> None:
            for spec in specs:
                if spec.step == step:
                    self.log.write(conn, spec)

        return write_archives
