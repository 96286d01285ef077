"""The Python twin of `edgeify MODEL --distill --prune 0.3 --trim-vocab --int8 --data F`.

    python examples/compress_api.py /work/models/electra-minilm-tweets ../shared/data/twitter_sentiment/tweets.csv

Stages are small frozen configs (printed in the report exactly as used); edgeify runs them
in the order distill -> prune -> trim-vocab before exporting and quantizing the result.
"""

import sys

import edgeify
from edgeify import compress

model, data = sys.argv[1], sys.argv[2]
report = edgeify.run(
    model, int8=True, data=data, text_column="text", label_column="sentiment",
    compress=(compress.Distill(student_layers=3, epochs=2), compress.Prune(ratio=0.3), compress.TrimVocab()),
    n_train=8000, out_dir="edgeify-out/compressed", force=True)

teacher = report["baseline"]["metric"]["value"]
for stage in report["stages"]:
    print(f"{stage['stage']:>10}: {stage['params']:>11,} params, accuracy {stage['metric']['value']:.2f} "
          f"({stage['metric_delta']:+.2f} vs the teacher's {teacher:.2f}), {stage['speedup_vs_baseline']:.2f}x faster")
chosen = report["selection"]["chosen"]
print(f"selected int8 file: {chosen}")
