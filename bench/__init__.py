"""pytest-benchmark suites (disabled in the default test run; see README.md here)."""
