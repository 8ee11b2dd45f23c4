"""Config sources (ini, json, yaml files, UWSGI_* environment) turned into one ordered list of
`Entry(key, value)` pairs, as uWSGI's "exported options"; magic vars and placeholders.
The command line parser (uwsgid/config/cli.py) merges them and converts values."""

from uwsgid.config.entries import ConfigError, Entry

__all__ = ["ConfigError", "Entry"]
