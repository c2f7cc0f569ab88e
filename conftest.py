"""Root wiring only: load the drillbook plugin for this repository's own tests."""

pytest_plugins = ["drillbook.plugin"]
