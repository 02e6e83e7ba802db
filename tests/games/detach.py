"""Starts idle.py as a grandchild of the caller, prints its pid, and exits.

The grandchild keeps this process's stdin, so the caller ends it by closing that pipe.
"""

import os
import sys

idle = os.path.join(os.path.dirname(os.path.abspath(__file__)), "idle.py")
pid = os.fork()
if pid == 0:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.execv(sys.executable, [sys.executable, idle])
print(pid, flush=True)
