"""The human-annotation survey: a local rating page over SQLite, and the export of its ratings.

`run(config)` (configs/annotate.py) serves the survey, or, with `config.export` set, writes the
annotations CSV (`path,score,std,n,ci95`) that label projection and fine-tuning read.
Modules: `store` (the SQLite store), `server` (page and HTTP API), `export` (screening, MOS).
"""

from __future__ import annotations


def run(config) -> object:
    """Exports the annotations when `config.export` names a CSV, else serves the survey."""
    if str(config.export):
        from tiqa.annotate import export
        return export.export_annotations(config)
    from tiqa.annotate import server
    return server.serve(config)
