"""The human-annotation survey: a local rating page over SQLite, and the export of its ratings.

The phase (configs/annotate.py) is `tiqa.phases.annotate`.
Modules: `store` (the SQLite store), `server` (page and HTTP API), `export` (screening, MOS).
"""
