"""Run one `stepwise` command in this process and write its exit code and peak RSS to a file.

Used by tests that bound a command's memory: ``python -m tests.engine.peak_rss OUT ARGS…``
writes ``{"code": …, "maxrss_kb": …, "hwm_kb": …}`` to OUT (stdout goes wherever the
caller sent it). ``maxrss_kb`` is `resource.getrusage`'s, which Linux carries over from
the parent across fork and exec (a large test process would mask the command's own
peak); ``hwm_kb`` is this process image's own peak (VmHWM), the one to bound.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from engine.cli import cli


def main() -> None:
    out, args = Path(sys.argv[1]), sys.argv[2:]
    try:
        cli.main(args, prog_name="stepwise", standalone_mode=True)
        code: object = 0
    except SystemExit as exit_:
        code = exit_.code
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    out.write_text(json.dumps({"code": code, "maxrss_kb": peak, "hwm_kb": hwm}))


if __name__ == "__main__":
    main()
