"""The local executor (DESIGN §5): runs as processes on this machine, the embedded default.

Its modules:

- `executor`: `LocalExecutor`, the `Executor` protocol over a journal and run folders;
- `journal` and `history`: every run in SQLite, and what a run folder says about its run;
- `workdir` and `supervision`: preparing a run's folders and asking the supervisor host for
  its supervisor; `exits`: telling the daemon when a supervisor exits; `sweeper`: removing
  acknowledged runs' folders off the daemon's path;
- `host`, `runner`, `checkout` and `masking`: the supervisor host (`programs/run_supervisor.py`)
  and what each supervisor it forks does, with the standard library only: clone a task's
  repository, run the command, mask its log;
- `flags`: the flags, settings and log lookup the command line finds through
  `executors/registry.py`.

This file imports none of them: the supervisor of every run imports this package.
"""
