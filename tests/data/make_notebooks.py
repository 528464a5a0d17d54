"""Writes the small notebooks the study tests run (run from this folder to regenerate them).

simple.ipynb needs only the standard library; simulate.ipynb runs the simulator and logs with
mpimpy.tracking the way the project's notebooks are meant to (see docs/studies.md).
"""

from textwrap import dedent

import nbformat


def make(path, params_src, body_srcs, tagged=True):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"Test notebook for mpimpy studies ({path}).")]
    cell = nbformat.v4.new_code_cell(dedent(params_src).strip())
    if tagged:
        cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nb.cells += [nbformat.v4.new_code_cell(dedent(s).strip()) for s in body_srcs]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i}"
    nbformat.write(nb, path)


make(
    "simple.ipynb",
    """
    a = 1
    scale: float = 0.5
    label = "x"
    flags = [1, 2]
    mode: str | float = "full"
    fail = False
    block_file = ""
    kill_worker = False
    seed = 0
    """,
    [
        """
        import os
        import signal
        import time
        """,
        """
        while block_file and os.path.exists(block_file):  # lets a test catch the point in flight
            time.sleep(0.1)
        if kill_worker:  # the kernel's parent is the runner's worker process: a dead worker
            os.kill(os.getppid(), signal.SIGKILL)
        if fail:
            raise RuntimeError(f"point asked to fail (a={a}, seed={seed})")
        """,
        """
        value = a * scale + seed
        print(value, label, flags, mode)
        print("run:", os.environ.get("MLFLOW_RUN_ID"))
        """,
    ],
)

make(
    "simulate.ipynb",
    """
    fmt = "INT"  # INT or FP slicing of both operands
    var: float = 0.05  # device programming variation
    m = 16  # x is m x k, W is k x n
    k = 32
    n = 8
    seed = 0
    """,
    [
        """
        import time

        import torch

        from mpimpy import DPETensor, SlicedData, tracking

        # Under `mpimpy study run` this resumes the run made for this point; by hand it starts one.
        run = tracking.start_run(experiment="simulate-by-hand")
        """,
        """
        torch.manual_seed(seed)
        x_data, w_data = torch.randn(m, k), torch.randn(k, n)
        bw_e = 8 if fmt == "FP" else None
        engine = DPETensor(var=var, seed=seed)
        x = SlicedData([1, 1, 2, 4], bw_e=bw_e, paral_size=(32, 32))
        x.slice_data_imp(engine, x_data, transpose=True)
        mat = SlicedData([1, 1, 2, 4], bw_e=bw_e, paral_size=(32, 32))
        mat.slice_data_imp(engine, w_data)
        t0 = time.perf_counter()
        y = engine(x, mat)
        sim_time_s = time.perf_counter() - t0
        """,
        """
        y_ideal = x_data @ w_data
        metrics = tracking.log_simulation(
            engine, x, mat, y, y_ideal, sim_time_s=sim_time_s, seed=seed, extra_params={"fmt": fmt}
        )
        run.end()  # by hand: FINISHED; under the runner: left to the runner
        metrics
        """,
    ],
)

make("noparams.ipynb", "a = 1\nseed = 0", ["print(a)"], tagged=False)
make("noseed.ipynb", "a = 1", ["print(a)"])
