"""Flask's hello world, for the wsgi-flask scenario: a framework app answers with an iterable
(werkzeug's ClosingIterator), not a list, so the server's path for iterables is what it measures."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return "Hello World!"


application = app
