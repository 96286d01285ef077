"""What the OpenVINO backend (openvino.py) and its cached-decoder half (openvino_decoder.py)
share: the rt_info keys written into every IR and the one way an IR is saved. A leaf:
each imports it, neither the other (openvino.py dispatches to openvino_decoder.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeify import contract
from edgeify.contract import sha256_of
from edgeify.errors import EdgeifyError

# Keys edgeify writes into the IR's rt_info (kept in the .xml): see edgeify/contract.py.
RT_PRECISION = list(contract.OV_PRECISION)
RT_BIN_SHA256 = list(contract.OV_BIN_SHA256)
RT_SHAPES = list(contract.OV_SHAPES)


def save_ir(model, xml: Path, compress_to_fp16: bool = False) -> None:
    """Save an .xml/.bin pair atomically, with the .bin's SHA-256 recorded in the .xml.

    OpenVINO itself only notices a .bin that is too small for its .xml; the checksum
    lets the runner refuse any .bin that is not the one written with this .xml.
    """
    import openvino as ov

    xml.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{xml.stem}.", dir=xml.parent) as tmp:
        tmp_xml = Path(tmp) / xml.name
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        digest = sha256_of(tmp_xml.with_suffix(".bin"))
        model.set_rt_info(digest, RT_BIN_SHA256)
        ov.save_model(model, str(tmp_xml), compress_to_fp16=compress_to_fp16)
        if sha256_of(tmp_xml.with_suffix(".bin")) != digest:  # saving must be deterministic
            raise EdgeifyError(f"{xml}: OpenVINO wrote different weights on a second save")
        os.replace(tmp_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp_xml, xml)
