"""The one exception type stages raise for bad input; the CLI prints it as one line."""


class PipelineError(Exception):
    """Bad input or configuration: printed as a single ``error: ...`` line, exit status 2."""
