"""Shipped ComfyUI workflows: API-format graphs, each with a manifest (see ``comfy.workflows``)."""

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent
