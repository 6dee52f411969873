#!/usr/bin/env python3
"""Forward-pass speed: `ichctl bench` against ONNX Runtime on the same weights.

For each architecture at 256x256 (by default), a seeded Keras reference model
(Tools/keras_reference.py) is converted to a bundle (Tools/convert_keras.py
--golden 2) and to an equivalent ONNX graph (Benchmarks/onnx_graph.py: BatchNorm
folded, explicit 'same' pads). ONNX Runtime's outputs must agree with Keras's
golden outputs (<= 1e-4) before anything is timed. Both bundle and ONNX file
are cached (default: $TMPDIR/ich-forward-pass).

Then, interleaved and repeated (this machine has slow episodes):

* ONNX Runtime in a subprocess (intra-op threads = --threads, inter-op 1,
  sequential execution, all graph optimizations), one warm-up pass then
  --iterations timed passes at batch 1 and batch 8, reporting what `ichctl
  bench` reports: images/s (1000 / mean ms per image), median and p90 ms per
  image, and the process's peak RSS;
* `ichctl bench --model DIR --batch B --iterations K --threads T`.

Prints a table and a JSON summary with the medians over the repeats and the
ratios ours/ORT (images/s at batch 8: higher is better for us; ms per image at
batch 1: lower is better). Without `ichctl bench`, only ONNX Runtime is timed.

    .venv/bin/python Benchmarks/forward_pass.py --ichctl .build/release/ichctl [--threads 2] [--iterations 10]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOLS = REPO_ROOT / "Tools"
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bundle  # noqa: E402
import onnx_graph  # noqa: E402

ORT_TOLERANCE = 1e-4


def log(message: str) -> None:  # progress on stderr, results on stdout
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Preparation (cached)


def prepare(arch: str, size: int, seed: int, cache: Path) -> tuple[Path, Path]:
    """(bundle directory, ONNX file) for the seeded reference model."""
    folder = cache / f"{arch}-{size}-seed{seed}"
    bundle_dir = folder / "bundle"
    onnx_path = folder / "model.onnx"
    ready = bundle_dir / "model.json"
    if ready.exists():
        try:
            bundle.read_bundle(bundle_dir)  # checks the sha256
        except Exception as error:  # noqa: BLE001 - rebuild on any damage
            log(f"{arch}: cached bundle unusable ({error}); rebuilding")
            ready.unlink()
    if not ready.exists():
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"{arch}.weights.h5"
        log(f"{arch}: building the seeded Keras model and converting it (once; cached in {folder})")
        run([sys.executable, str(TOOLS / "keras_reference.py"), "--arch", arch, "--size", str(size),
             "--seed", str(seed), "--out", str(weights)])
        run([sys.executable, str(TOOLS / "convert_keras.py"), "--arch", arch, "--weights", str(weights),
             "--out", str(bundle_dir), "--golden", "2", "--name", f"bench-{arch}-{size}",
             "--trained-on", "seeded random weights (benchmark)", "--synthetic-data"])
        weights.unlink()
        if onnx_path.exists():
            onnx_path.unlink()
    if not onnx_path.exists() or onnx_path.stat().st_mtime < ready.stat().st_mtime:
        model, _ = onnx_graph.build_from_bundle(bundle_dir)
        onnx_path.write_bytes(model.SerializeToString())
    return bundle_dir, onnx_path


def run(args: list[str], show_stderr: bool = False) -> str:
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=None if show_stderr else subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({result.returncode}):\n{(result.stderr or '')[-3000:]}")
    return result.stdout


def check_ort_against_keras(bundle_dir: Path, onnx_path: Path, threads: int) -> float:
    golden, _ = bundle.read_safetensors(bundle_dir / bundle.GOLDEN_FILE)
    session = onnx_graph.session(onnx_path, threads)
    probabilities, _ = session.run(None, {"input": golden["inputs"]})
    error = float(np.abs(probabilities - golden["outputs"]).max())
    if error > ORT_TOLERANCE:
        raise SystemExit(f"{onnx_path}: ONNX Runtime differs from Keras by {error:.2e} (limit {ORT_TOLERANCE:.0e})")
    return error


# --------------------------------------------------------------------------
# Timing


def summarize(per_image_ms: list[float]) -> dict:
    """The statistics `ichctl bench` prints, computed the same way."""
    ordered = sorted(per_image_ms)
    n = len(ordered)
    return {
        "images_per_second": 1000 / (sum(ordered) / n),
        "ms_per_image_median": ordered[n // 2],
        "ms_per_image_p90": ordered[min(n - 1, math.ceil(n * 0.9) - 1)],
    }


def ort_worker(args: argparse.Namespace) -> int:
    """Runs in its own process so that its peak RSS is its own."""
    session = onnx_graph.session(args.ort_worker, args.threads)
    shape = session.get_inputs()[0].shape
    height, width = int(shape[1]), int(shape[2])
    x = np.random.default_rng(12345).random((args.batch, height, width, 3), dtype=np.float32)
    per_image = []
    for iteration in range(args.iterations + 1):
        start = time.perf_counter_ns()
        session.run(None, {"input": x})
        ms = (time.perf_counter_ns() - start) / 1e6
        if iteration > 0:
            per_image.append(ms / args.batch)
    report = summarize(per_image)
    report.update(batch=args.batch, threads=args.threads, iterations=args.iterations, peak_rss_bytes=peak_rss_bytes())
    print(json.dumps(report))
    return 0


def peak_rss_bytes() -> int:
    """This process's own peak RSS: VmHWM. (getrusage's ru_maxrss is not: on Linux
    it keeps the peak of the process that forked it across exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def prepare_worker(args: argparse.Namespace) -> int:
    """Bundle, ONNX file and the ORT-vs-Keras check, in a subprocess: the parent
    stays small, since its peak RSS leaks into the ru_maxrss of what it spawns."""
    import onnxruntime

    bundle_dir, onnx_path = prepare(args.prepare_worker, args.size, args.seed, args.cache_dir)
    error = check_ort_against_keras(bundle_dir, onnx_path, args.threads)
    print(json.dumps({"bundle": str(bundle_dir), "onnx": str(onnx_path), "ort_vs_keras_max_abs_diff": error,
                      "onnxruntime": onnxruntime.__version__}))
    return 0


def time_ort(onnx_path: Path, batch: int, iterations: int, threads: int) -> dict:
    out = run([sys.executable, str(Path(__file__).resolve()), "--ort-worker", str(onnx_path), "--batch", str(batch),
               "--iterations", str(iterations), "--threads", str(threads)])
    return json.loads(out.strip().splitlines()[-1])


def time_ours(ichctl: Path, bundle_dir: Path, batch: int, iterations: int, threads: int) -> dict:
    out = run([str(ichctl), "bench", "--model", str(bundle_dir), "--batch", str(batch),
               "--iterations", str(iterations), "--threads", str(threads)])
    return json.loads(out.strip().splitlines()[-1])


def has_bench(ichctl: Path | None) -> bool:
    if ichctl is None or not ichctl.is_file():
        return False
    probe = subprocess.run([str(ichctl), "bench", "--help"], capture_output=True, text=True)
    return probe.returncode == 0 and "--model" in probe.stdout + probe.stderr


def median_report(reports: list[dict]) -> dict:
    keys = ("images_per_second", "ms_per_image_median", "ms_per_image_p90", "peak_rss_bytes")
    return {k: statistics.median(r[k] for r in reports) for k in keys if all(k in r for r in reports)}


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ichctl", type=Path, help="ichctl binary (a release build)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=10, help="timed passes per run, after one warm-up")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; medians are reported")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--arch", nargs="+", default=["resnet50", "inception_v3"], choices=["resnet50", "inception_v3"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "ich-forward-pass")
    parser.add_argument("--json-out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--ort-worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepare-worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ort_worker:
        return ort_worker(args)
    if args.prepare_worker:
        return prepare_worker(args)

    batches = [int(b) for b in args.batches.split(",")]
    ours_available = has_bench(args.ichctl)
    if not ours_available:
        log(f"`{args.ichctl} bench` is not available: timing ONNX Runtime only")
    summary: dict = {
        "threads": args.threads, "iterations": args.iterations, "repeats": args.repeats, "size": args.size,
        "cpu": cpu_name(), "ichctl": str(args.ichctl) if ours_available else None, "models": {},
    }
    for arch in args.arch:
        prepared = json.loads(run([sys.executable, str(Path(__file__).resolve()), "--prepare-worker", arch,
                                   "--size", str(args.size), "--seed", str(args.seed), "--threads", str(args.threads),
                                   "--cache-dir", str(args.cache_dir)], show_stderr=True).strip().splitlines()[-1])
        bundle_dir, onnx_path = Path(prepared["bundle"]), Path(prepared["onnx"])
        error = prepared["ort_vs_keras_max_abs_diff"]
        summary["onnxruntime"] = prepared["onnxruntime"]
        log(f"{arch}: ONNX Runtime vs Keras golden outputs: max |diff| {error:.1e}")
        runs: dict[str, dict[int, list[dict]]] = {"onnxruntime": {b: [] for b in batches}, "ichctl": {b: [] for b in batches}}
        for repeat in range(args.repeats):
            for batch in batches:
                sides = ["onnxruntime", "ichctl"] if (repeat + batch) % 2 == 0 else ["ichctl", "onnxruntime"]
                for side in sides:
                    if side == "onnxruntime":
                        report = time_ort(onnx_path, batch, args.iterations, args.threads)
                    elif ours_available:
                        report = time_ours(args.ichctl, bundle_dir, batch, args.iterations, args.threads)
                    else:
                        continue
                    runs[side][batch].append(report)
                    log(f"{arch} batch {batch} {side:11s} run {repeat + 1}: {report['images_per_second']:6.2f} img/s, "
                        f"median {report['ms_per_image_median']:7.2f} ms/image")
        entry = {"ort_vs_keras_max_abs_diff": error}
        for side, by_batch in runs.items():
            if any(by_batch.values()):
                entry[side] = {f"batch{b}": median_report(reports) for b, reports in by_batch.items()}
        if "ichctl" in entry:
            ours, ort = entry["ichctl"], entry["onnxruntime"]
            ratios = {}
            if "batch8" in ours:
                ratios["images_per_second_batch8_ours_over_ort"] = ours["batch8"]["images_per_second"] / ort["batch8"]["images_per_second"]
            if "batch1" in ours:
                ratios["ms_per_image_batch1_ours_over_ort"] = ours["batch1"]["ms_per_image_median"] / ort["batch1"]["ms_per_image_median"]
            entry["ratios"] = ratios
        summary["models"][arch] = entry

    print_table(summary, batches)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


def print_table(summary: dict, batches: list[int]) -> None:
    header = f"{'model':13s} {'runtime':12s}" + "".join(
        f" | b{b} img/s  b{b} ms med  b{b} ms p90" for b in batches) + " | peak RSS MiB"
    print(header)
    print("-" * len(header))
    for arch, entry in summary["models"].items():
        for side in ("onnxruntime", "ichctl"):
            if side not in entry:
                continue
            row = f"{arch:13s} {side:12s}"
            rss = 0.0
            for b in batches:
                r = entry[side].get(f"batch{b}", {})
                row += f" | {r.get('images_per_second', float('nan')):9.2f}  {r.get('ms_per_image_median', float('nan')):10.2f}  {r.get('ms_per_image_p90', float('nan')):10.2f}"
                rss = max(rss, r.get("peak_rss_bytes", 0) / 2**20)
            print(row + f" | {rss:8.0f}")
        for name, value in entry.get("ratios", {}).items():
            print(f"{arch:13s} {name}: {value:.2f}")
    print()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
