"""The ground floor: typed settings (``config``) and JSON-lines logging (``logs``). Imports nothing of ours,
so every package — comfy, gateway, bot, and the ``comfybot`` command on top — may import it."""
