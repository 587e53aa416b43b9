"""Small helpers every layer may use: quiet TensorFlow start-up, holding interrupts, plug-ins.

Modules (private, re-exported here): ``_quiet``, ``_interrupts``, ``_plugins`` (side
effects that lower layers switch on by name).
"""

from ._interrupts import deferred_interrupts
from ._plugins import PLUGINS, plugin
from ._quiet import filter_native_stderr, quiet_tensorflow

__all__ = ["PLUGINS", "deferred_interrupts", "filter_native_stderr", "plugin", "quiet_tensorflow"]
