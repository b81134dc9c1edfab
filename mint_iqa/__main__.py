"""`python -m mint_iqa <command>`: what the DVC stages run."""

from mint_iqa.cli import app

app(prog_name="mint-iqa")
