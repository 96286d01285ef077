"""The Python API mirrors the CLI: `edgeify.run(MODEL, **options)` returns the report.

    python examples/quickstart.py                  # offline: builds the ELECTRA starter
    python examples/quickstart.py path/to/model --data tweets.csv
"""

import sys

import edgeify


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "electra"
    data = sys.argv[sys.argv.index("--data") + 1] if "--data" in sys.argv else None
    report = edgeify.run(model, int8=True, data=data, out_dir="edgeify-out/quickstart", force=True)

    base = report["baseline"]
    print(f"\n{report['model']['family']} ({report['model']['source']}): "
          f"PyTorch {base['metric']['name']} {base['metric']['value']:.2f}, p50 {base['latency_ms']['p50']:.2f} ms")
    for art in report["artifacts"]:
        mark = "  <- selected" if art.get("selected") else ""
        print(f"  {art['format']} {art['precision']:13} {art['metric']['value']:7.2f}  "
              f"p50 {art['latency_ms']['p50']:7.2f} ms  {art['speedup_vs_baseline']:.2f}x  "
              f"{art['size_bytes'] / 2**20:6.1f} MB{mark}")


if __name__ == "__main__":
    main()
