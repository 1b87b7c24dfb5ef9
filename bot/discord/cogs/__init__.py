"""One Cog per feature: ``generate`` (/generate), ``jobs`` (/workflows, /cancel, /queue), ``settings``
(/settings), ``buttons`` (the persistent job buttons)."""
