"""One Cog per feature: ``generate`` (/generate), ``jobs`` (/workflows, /cancel, /queue)."""
