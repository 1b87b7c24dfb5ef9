"""User-facing text catalogues (gettext ``.po``), one per language."""

from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parent
