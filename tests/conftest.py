"""Fixtures shared by every test folder, declared once as plugins: a folder's own conftest.py
holds only what is local to it, and test modules use these fixtures by name without
importing them."""

pytest_plugins = ["tests.support.fixtures", "tests.support.logcapture"]
