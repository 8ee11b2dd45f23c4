"""Build contract of the Python WSGI plugin (modifier1 0), read by uwsgiconfig.py.

The plugin is Python (package cffi_plugin/) running the WSGI app in the embedded interpreter;
the C it uses is the core's _uwsgi module, so building it bakes the package only."""

NAME = "cffi"
CFLAGS = []
LDFLAGS = []
LIBS = []
GCC_LIST = []
REQUIRES = [("cffi", "pip install cffi (or run make venv)")]
