"""Cold-start time of `attnsim predict` (new interpreter each run), and of its imports.

    python benchmarks/cold_start.py [runs]

Prints the median over runs of (a) the whole console command and (b) `python -c pass`, so the
ratio shows what attnsim itself adds to interpreter start-up.
"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

CMD = ["predict", "--hw", "H100-SXM", "--pattern", "neighborhood", "--tokens", "30x48x80",
       "--heads", "24", "--window", "18x24x24", "--json"]


def median_s(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    script = str(Path(sys.executable).with_name("attnsim"))
    bare = median_s([sys.executable, "-c", "pass"], runs)
    full = median_s([script, *CMD], runs)
    print(f"python -c pass        : {bare * 1e3:7.1f} ms (median of {runs})")
    print(f"attnsim predict (cold): {full * 1e3:7.1f} ms (median of {runs})")
    print(f"attnsim's own share   : {(full - bare) * 1e3:7.1f} ms; target: well under 1000 ms")


if __name__ == "__main__":
    main()
