"""The annotation phase (configs/annotate.py): serves the survey (`tiqa.annotate.server`), or,
with `config.export` set, writes the annotations CSV (`path,score,std,n,ci95`) that label
projection and fine-tuning read (`tiqa.annotate.export`)."""

from __future__ import annotations

from tiqa.phases import settings


def survey_settings(config):
    """The survey keys of configs/annotate.py as `server.SurveySettings`."""
    from tiqa.annotate import server
    return settings.block(server.SurveySettings, config)


def screening_settings(config):
    """The export's observer screening keys of configs/annotate.py as `export.ScreeningSettings`."""
    from tiqa.annotate import export
    return export.ScreeningSettings(rule=str(config.screening),
                                    min_correlation=float(config.min_correlation),
                                    bt500_min_observers=int(config.bt500_min_observers),
                                    min_common_images=int(config.min_common_images))


def run(config) -> object:
    """Exports the annotations when `config.export` names a CSV, else serves the survey."""
    if str(config.export):
        from tiqa.annotate import export
        return export.export_annotations(str(config.store), str(config.export),
                                         screening_settings(config))
    from tiqa.annotate import server
    return server.serve(survey_settings(config))
