"""One module per `symcost` subcommand group; each exposes ``COMMANDS = {name: (help, configure, run)}``.

Modules import nothing heavy at module level: torch is imported inside ``run``.
"""


#: what ``--no-cache`` says on every command that reads the derivation cache
NO_CACHE_HELP = ("derive afresh, neither reading nor writing the cache. A cached derivation is checked against the "
                 "target file and every source file of yours it imported; what a model factory reads otherwise "
                 "(environment variables, data files) cannot be known: use --no-cache when that changes")
