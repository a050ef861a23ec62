"""The ``clinical-pipelines`` command line: one module per command group, each importing only what its
commands need when they run, so ``clinical-pipelines --help`` imports no Dagster, GX or Presidio."""

from __future__ import annotations

import click

from clinical_pipelines.cli import (
    access,
    audit,
    catalog,
    deid,
    holds,
    keys,
    lifecycle,
    quarantine,
    run,
    synth,
    versions,
)
from clinical_pipelines.cli._common import config_errors, fail, refused


class _Main(click.Group):
    """The top-level group: a configuration error in any command is one line naming the variable or file
    and the fix, exit status 2; a refusal (no grant) is one line naming the missing grant, exit status 3;
    never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from clinical_pipelines.catalog.access import AccessDenied

        try:
            return super().invoke(ctx)
        except AccessDenied as exc:
            refused(" ".join(str(exc).split()))
        except config_errors() as exc:
            fail(" ".join(str(exc).split()))


@click.group(cls=_Main)
@click.version_option(package_name="clinical-pipelines")
def main() -> None:
    """Governed, versioned, training-ready clinical datasets."""


for _module in (synth, run, quarantine, deid, catalog, versions, access, audit, keys, holds, lifecycle):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
