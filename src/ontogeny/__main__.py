"""`python -m ontogeny` is the `ontogeny` command."""

from ontogeny.cli import app

app()
