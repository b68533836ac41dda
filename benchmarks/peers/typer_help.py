"""Peer: the smallest Typer program, one command with one option; what `--help` costs any Typer CLI."""

import typer


def main(name: str = typer.Option("world", help="Whom to greet.")) -> None:
    """Say hello."""
    print(f"hello {name}")


if __name__ == "__main__":
    typer.run(main)
