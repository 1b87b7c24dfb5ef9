"""One Cog per feature: ``generate`` (/generate), ``jobs`` (/workflows, /cancel, /queue, /history, /stats),
``settings`` (/settings), ``help`` (/help), ``buttons`` (the persistent job buttons)."""
