"""``python -m engine.http``: the same as ``stepwise serve`` (see `engine.cli.serve`)."""

from engine.cli.serve import serve

if __name__ == "__main__":
    serve(prog_name="python -m engine.http")
