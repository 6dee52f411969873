"""Independent reference for ichctl's `hounsfield` and `input` stages.

The code lives in Tools/preprocess.py (pydicom for decoding, NumPy/OpenCV for
the arithmetic; it shares no code with the Swift implementation), so that
Tools/train.py builds training inputs with the very function these tests hold
the Swift preprocessing to. This module re-exports it under its old name; see
Tools/preprocess.py for what each stage does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "Tools" / "preprocess.py"


def _load():
    # Loaded from its path under a name of its own, so that no other module
    # called `preprocess` on sys.path (Benchmarks/preprocess.py) can stand in.
    name = "ich_tools_preprocess"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


_shared = _load()

AIR_HU = _shared.AIR_HU
DEFAULT_WINDOWS = _shared.DEFAULT_WINDOWS
RESIZE_MODES = _shared.RESIZE_MODES
read_dataset = _shared.read_dataset
transfer_syntax = _shared.transfer_syntax
first_value = _shared.first_value
stored_values = _shared.stored_values
rescale = _shared.rescale
modality = _shared.modality
to_stored_domain = _shared.to_stored_domain
padding_range = _shared.padding_range
has_rsna_defect = _shared.has_rsna_defect
hounsfield = _shared.hounsfield
window_bounds = _shared.window_bounds
apply_window = _shared.apply_window
resize = _shared.resize
model_input_from_hu = _shared.model_input_from_hu
model_input = _shared.model_input
windows_argument = _shared.windows_argument
Settings = _shared.Settings
model_input_for = _shared.model_input_for
load_model_input = _shared.load_model_input
