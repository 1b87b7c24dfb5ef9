"""``python -m comfybot`` is the ``comfybot`` command."""

from comfybot.cli import main

raise SystemExit(main())
