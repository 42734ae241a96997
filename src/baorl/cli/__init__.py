"""The `baorl` command line."""
