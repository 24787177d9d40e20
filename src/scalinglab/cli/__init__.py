"""The ``scalinglab`` command line: parses, validates, calls the library, prints with rich (or JSON).

One thin module per command group, all on the one :data:`app` of :mod:`._common`. Importing a module
registers its commands, so the import order below is the order ``scalinglab --help`` lists them in;
the groups (sub-apps) are mounted after, in their listed order.
"""
from __future__ import annotations

from . import runs, fit, lab, testtime, economics, observe, downstream, report  # noqa: F401  (registers the commands)
from ._common import app

app.add_typer(testtime.samples_app, name="samples")
app.add_typer(economics.cost_app, name="cost")
app.add_typer(downstream.scores_app, name="scores")
app.add_typer(observe.models_app, name="models")
app.add_typer(observe.observe_app, name="observe")

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()
