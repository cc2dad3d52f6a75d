from tests.support.fixtures import git_root  # noqa: F401 - a fixture, used by name
