"""The ``ironhold`` command: parses options, calls into the modules, prints."""
