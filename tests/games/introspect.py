"""Prints one JSON line: pid, session id, process group and the value of the named variable."""

import json
import os
import sys

variable = sys.argv[1] if len(sys.argv) > 1 else "HOME"
report = {
    "pid": os.getpid(),
    "sid": os.getsid(0),
    "pgid": os.getpgrp(),
    "variable": os.environ.get(variable),
}
print(json.dumps(report), flush=True)
