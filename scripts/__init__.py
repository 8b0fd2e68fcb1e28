"""The `lanes` command line and the operator tools."""
