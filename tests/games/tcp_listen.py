"""Listens on a TCP socket (port 0 = any free port), says which port, waits to be killed."""

import signal
import socket
import sys

from _ready import say

host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sock = socket.socket(family, socket.SOCK_STREAM)
sock.bind((host, port))
sock.listen()
say("bound tcp", sock.getsockname()[1])
while True:
    signal.pause()
