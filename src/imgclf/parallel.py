"""``fork_map``: a function over items in forked worker processes, with no module state.

The function may close over anything (an open archive's memory map, a shared output array):
forked workers inherit it and the items; only item indices go to them and only results (or an
exception) come back through a queue."""

import multiprocessing
import queue
from collections.abc import Callable, Sequence

from imgclf.errors import PipelineError


def fork_map(function: Callable, items: Sequence, workers: int) -> list:
    """``[function(item) for item in items]`` over up to ``workers`` forked processes, each taking
    the next item when it is free (in this process when one is enough). The first exception a
    worker raises is raised here and the other workers are stopped; a worker that dies without
    one (killed, out of memory) is an error too, not a hang."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    context = multiprocessing.get_context("fork")
    tasks, results = context.SimpleQueue(), context.Queue()
    count = min(workers, len(items))
    for index in [*range(len(items)), *[None] * count]:
        tasks.put(index)

    def work() -> None:
        while (index := tasks.get()) is not None:
            try:
                results.put((index, True, function(items[index])))
            except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
                results.put((index, False, exc))
                return

    processes = [context.Process(target=work, daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    out: list = [None] * len(items)
    try:
        for _ in range(len(items)):
            while True:
                try:
                    index, ok, value = results.get(timeout=1.0)
                    break
                except queue.Empty:
                    if dead := [p.exitcode for p in processes if p.exitcode not in (None, 0)]:
                        raise PipelineError(f"a worker process died (exit code {dead[0]})") from None
            if not ok:
                raise value
            out[index] = value
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
    return out
