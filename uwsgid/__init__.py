"""uwsgid: the Python core of a uWSGI-compatible server for Lua WSAPI and Python WSGI apps."""

__version__ = "2.0.21-uwsgid0.1"
