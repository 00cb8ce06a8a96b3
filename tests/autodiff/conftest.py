from __future__ import annotations

import sys
from pathlib import Path

# The shared helpers (vjp_helpers.check_vjp, op_model) import as a top-level module.
sys.path.insert(0, str(Path(__file__).parent))
