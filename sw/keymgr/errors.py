"""The key manager's exceptions. Every refused request raises one of these (or TypeError/ValueError
for malformed arguments) before anything is changed."""


__all__ = ["KeyManagerError", "UnknownLatch", "PolicyError", "LatchConflict", "PrivilegeError",
           "ChildSaRejected", "UnknownChildSa", "InvalidTransition", "PersistenceError"]


class KeyManagerError(Exception):
    """Base class of the key manager's refusals."""


class UnknownLatch(KeyManagerError, KeyError):
    """No latch has this handle (never created, or released and deleted)."""

    def __str__(self):
        # KeyError would print the repr of its argument; a message reads better.
        return str(self.args[0]) if self.args else ""


class UnknownChildSa(KeyManagerError, KeyError):
    def __str__(self):
        return str(self.args[0]) if self.args else ""


class PolicyError(KeyManagerError):
    """The SPD or PAD does not permit the request."""


class PrivilegeError(PolicyError):
    """The request needs a privilege the caller does not have (section 3: BYPASS over PROTECT)."""


class LatchConflict(KeyManagerError):
    """A latch cannot be created because another latch or a conflicting child SA exists."""


class ChildSaRejected(KeyManagerError):
    """A child SA proposal was refused; nothing was installed."""


class InvalidTransition(KeyManagerError):
    """A latch was asked to move to a state its current state cannot reach."""


class PersistenceError(KeyManagerError):
    """The database and the engine disagree in a way the key manager cannot repair by itself."""
