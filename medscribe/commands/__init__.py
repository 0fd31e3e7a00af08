"""Thin Typer commands: each parses flags, loads settings and calls one plain function of a stage module.

Modules here import only typer/rich at top level; stage modules (and torch & co.) are imported inside the
command functions so that `medscribe --help` and shell completion stay fast.
"""
