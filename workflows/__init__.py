"""Shipped ComfyUI workflows: API-format graphs, each with a manifest (see ``comfy.workflows``).

Each workflow is two files: ``<name>.json``, the graph as ComfyUI's "Save (API Format)" / "Export (API)"
writes it (enable dev mode in ComfyUI's settings; a UI-format export with "nodes"/"links" is refused), and
``<name>.manifest.json``, which says what users may set and where it goes::

    {"description": "Text to image", "kind": "txt2img", "timeout_s": 300,
     "params": {"prompt": {"type": "text", "max_length": 2000, "required": true,
                           "targets": ["6.inputs.text"]},
                "seed": {"type": "seed", "targets": ["3.inputs.seed"]},
                "ar": {"type": "aspect", "default": "1:1", "width": ["5.inputs.width"],
                       "height": ["5.inputs.height"]}},
     "images": {"image": {"node": "10", "required": true}},
     "outputs": ["9"], "labels": {"3": "Sampling"}, "seed_param": "seed", "prompt_param": "prompt"}

Param types: text, int, float, seed, choice, bool, aspect, model. Targets are ``<node_id>.inputs.<input>``.
Operators add or replace workflows by putting such pairs in ``COMFYBOT_WORKFLOWS_DIR`` (same name replaces
the shipped one) and change model file names without editing JSON through model overrides
(``{"checkpoint": "mymodel.safetensors"}`` or ``{"txt2img.checkpoint": ...}``).
Shipped: txt2img, img2img, upscale, hires. None undresses people, swaps faces or sexualises real people.
"""

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent
