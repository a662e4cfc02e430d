"""``python -m archscope``."""

from archscope.cli import main

main(prog_name="archscope")
