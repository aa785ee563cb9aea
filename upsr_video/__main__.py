"""`python -m upsr_video` = the `upsr-video` command."""
from .cli import main

main(prog_name="upsr-video")
