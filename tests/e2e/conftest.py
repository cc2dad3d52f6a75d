from tests.support.fixtures import git_daemon, git_root, git_user  # noqa: F401 - by name
