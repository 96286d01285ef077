"""Which builtin op versions a TFLite runtime can load: writes edgeify/targets/tflite_ops/<runtime>.json.

For every builtin op and version 1..MAX_VERSION, a minimal model whose opcode table holds
just that (op, version) is handed to the runtime's Interpreter: the interpreter resolves
every opcode when it is built and fails with "Didn't find op for builtin opcode" if it has
no kernel for it. The highest version that loads is the runtime's limit for that op.

Run it with the Python that has the runtime (a tflite-runtime 2.14 venv, as on Raspberry Pi
OS), after building the probe models with this project's Python:

    python tools/tflite_op_table.py build /tmp/opmodels           # needs ai-edge-litert
    /path/to/venv-tflrt/bin/python tools/tflite_op_table.py probe /tmp/opmodels \
        edgeify/targets/tflite_ops/tflite-runtime-2.14.json
"""

import json
import sys
from pathlib import Path

MAX_VERSION = 16
PLACEHOLDER_FOR_GREATER_OP_CODES = 127


def build(out_dir: str) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # CUSTOM needs a custom_code name and DELEGATE is not an op a file may use
    names = {k: v for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_") and k not in ("CUSTOM", "DELEGATE")}
    for name, code in names.items():
        for version in range(1, MAX_VERSION + 1):
            op_code = schema.OperatorCodeT()
            op_code.builtinCode = code
            op_code.deprecatedBuiltinCode = min(code, PLACEHOLDER_FOR_GREATER_OP_CODES)
            op_code.version = version
            model = schema.ModelT()
            model.version = 3
            model.operatorCodes = [op_code]
            model.subgraphs = [schema.SubGraphT()]
            model.subgraphs[0].tensors, model.subgraphs[0].inputs = [], []
            model.subgraphs[0].outputs, model.subgraphs[0].operators = [], []
            model.buffers = [schema.BufferT()]
            builder = flatbuffers.Builder(1024)
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
            (out / f"{name}.v{version}.tflite").write_bytes(builder.Output())


def probe(models_dir: str, out_json: str) -> None:
    from importlib.metadata import version

    try:
        from tflite_runtime.interpreter import Interpreter
        runtime = f"tflite-runtime {version('tflite-runtime')}"
    except ImportError:
        from ai_edge_litert.interpreter import Interpreter
        runtime = f"ai-edge-litert {version('ai-edge-litert')}"
    limits: dict[str, int] = {}
    for path in sorted(Path(models_dir).glob("*.tflite")):
        name, v = path.stem.rsplit(".v", 1)
        try:
            Interpreter(model_path=str(path))
        except Exception as e:  # noqa: BLE001
            if not any(s in str(e) for s in ("find op", "opcode", "out of range")):
                raise SystemExit(f"{path.name}: unexpected error: {e}")
            continue
        limits[name] = max(limits.get(name, 0), int(v))
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps({"runtime": runtime, "generated_by": "tools/tflite_op_table.py",
                                          "max_version": dict(sorted(limits.items()))}, indent=1) + "\n")
    print(f"{runtime}: {len(limits)} builtin ops")


if __name__ == "__main__":
    {"build": build, "probe": probe}[sys.argv[1]](*sys.argv[2:])
