"""pytest plugin: fixtures for users of testbed (see README)."""
