from tests.support.fixtures import git_root, git_user  # noqa: F401 - fixtures by name
