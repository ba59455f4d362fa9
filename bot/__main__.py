"""`python -m bot` is the `checkin-bot` command."""

from bot.cli import main

main()
