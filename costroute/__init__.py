"""The `costroute` command (costroute/cli.py): the top of the project, above backends/,
profiles/, serving/ and loadtest/, whose subcommands it registers. Nothing imports it."""
