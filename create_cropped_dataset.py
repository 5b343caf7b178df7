"""Crop every HaGRID hand into data/crops (same as ``hand-gestures crop``; see ``--help``)."""
import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main(["crop", *sys.argv[1:]]))
