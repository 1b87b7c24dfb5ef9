"""comfybot: ComfyUI in your chats. This package is the process glue: config, logging and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("comfybot")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
