"""`python -m medscribe`: the same as the `medscribe` command."""

from medscribe.cli import run

if __name__ == "__main__":
    run()
