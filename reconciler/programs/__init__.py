"""The `main` of every helper process lives here: each module is one program the daemon, an
executor or a runner image starts (`python -m reconciler.programs.NAME` or a console script),
and holds only what turns the process's arguments, streams and environment into a call of the
code it runs."""
