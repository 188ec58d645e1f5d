"""Command-line interface: ``prism-science COMMAND``."""
