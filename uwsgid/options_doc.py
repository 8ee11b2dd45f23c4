"""docs/OPTIONS.md, generated: `python -m uwsgid.options_doc > docs/OPTIONS.md`.

Every option is declared by then: the core's, the shared services' and the embedded plugins'.
"""

from uwsgid import main  # noqa: F401  (imports the core and the services: their declarations)
from uwsgid.config import reference
from uwsgid.plugins import loader

if __name__ == "__main__":
    loader.embedded_plugins()
    print(reference.markdown())
