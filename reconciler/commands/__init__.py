"""One module per subcommand, each exposing `run(args: argparse.Namespace) -> int`."""
