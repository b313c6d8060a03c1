"""``python -m engine.http``: the same as ``stepwise serve`` (see `engine.http.command`)."""

from engine.http.command import serve

if __name__ == "__main__":
    serve(prog_name="python -m engine.http")
