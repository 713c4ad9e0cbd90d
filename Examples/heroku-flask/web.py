"""The seed's app: "Hello World!" and a `Homepage hits` counter, sent to the statsd server next to it."""
import os

import statsd
from flask import Flask

statsd.Connection.set_defaults(
    host=os.environ.get("STATSD_HOST", "127.0.0.1"), port=int(os.environ.get("STATSD_PORT", "8125"))
)
app = Flask(__name__)
homepage_hits = statsd.Counter("Homepage hits")


@app.route("/")
def hello():
    homepage_hits.increment()
    return "Hello World!"
