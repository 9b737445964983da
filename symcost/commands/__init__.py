"""One module per `symcost` subcommand group; each exposes ``COMMANDS = {name: (help, configure, run)}``.

Modules import nothing heavy at module level: torch is imported inside ``run``.
"""
