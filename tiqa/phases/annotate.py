"""The annotation phase (configs/annotate.py): serves the survey (`tiqa.annotate.server`), or,
with `config.export` set, writes the annotations CSV (`path,score,std,n,ci95`) that label
projection and fine-tuning read (`tiqa.annotate.export`)."""

from __future__ import annotations


def run(config) -> object:
    """Exports the annotations when `config.export` names a CSV, else serves the survey."""
    if str(config.export):
        from tiqa.annotate import export
        return export.export_annotations(config)
    from tiqa.annotate import server
    return server.serve(config)
