"""The `main` of every helper process the daemon starts."""
