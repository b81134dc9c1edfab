"""`python -m mint_iqa <command>`: what the DVC stages run."""

from mint_iqa.cli import main

main(prog_name="mint-iqa")
