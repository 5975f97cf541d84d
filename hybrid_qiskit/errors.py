"""The one exception type users see as a single clear line (the CLI prints it, no traceback)."""


class HybridQiskitError(Exception):
    """Bad input or an unusable environment, with a message that says what to do."""


class UnknownBackendError(HybridQiskitError, KeyError):
    """A backend name that is not registered; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingCredentialsError(HybridQiskitError):
    """IBM Quantum credentials are needed but none were found."""


class DatasetNotFoundError(HybridQiskitError):
    """A torchvision dataset is not on disk and downloading was not requested."""


class CheckpointError(HybridQiskitError):
    """A checkpoint that is missing, corrupt, or does not match the requested model."""
