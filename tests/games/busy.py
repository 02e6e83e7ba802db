"""Says ready, then burns CPU until killed."""

from _ready import say

say("ready")
while True:
    pass
