"""The project's few exception classes.

Every message names the file (or parameter), the check that failed and what the user can do.
"""


class InputError(ValueError):
    """Bad input data or configuration: a file, a column or a value the pipeline cannot use."""


class RegistrationError(RuntimeError):
    """A registration that converged to an implausible result and is refused, not measured."""
