"""`state/metrics.json`: how each run and each of its agent processes went, as numbers.

Contract:
- `RunMetrics(run)` gathers, for one `Run`: per agent process (`mock.p1`) its tasks
  (attempts), errors, response time p50/p95, tokens, cost, CPU seconds and peak RSS
  (`state.processes.process_usage` samples of each pid it ran) and the latest
  `metrics.report` of each of its processes (`AgentHandle.reported`, counters since that
  process started); per run the same, plus
  the run's figures (operations, success rate, average / p95 response, peak concurrency,
  operations per second).
- It is written in batches: `start()` arms a timer that writes the run's entry every
  `FLUSH_S` while anything changed, and `close()` writes the last one (after the run's
  figures are final). Each write is one `StateStore.update_json` (its lock, temp file,
  fsync, replace) that replaces this run's entry; the file keeps the newest `MAX_RUNS`.
- `read(store)` returns the runs' entries, newest first; a file that is not JSON is moved
  aside by the store and a `StateError` says so; a JSON file of another shape is a
  `StateError` too, and is left as it is.
- `report(entries)` is what `aiswitch metrics` prints: total operations, success rate,
  average and p95 response time, peak concurrency, operations per second. Across runs the
  p95 comes from each run's response-time histogram (`HISTOGRAM_STEP` wide buckets), so it
  is within that much of the exact figure; for one run it is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiswitch.errors import StateError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiswitch.coordinator.results import AgentResult, RunFigures
    from aiswitch.coordinator.run import Run
    from aiswitch.state.store import StateStore

RESOURCE = "metrics"
VERSION = 1
# A running run's entry is rewritten at most this often (and once at its end).
FLUSH_S = 10.0
# The file keeps the newest runs' entries only.
MAX_RUNS = 500
# Response-time histogram buckets: each 5 % wider than the one before, from 1 ms.
HISTOGRAM_STEP = 1.05


def metrics_path(store: StateStore) -> Path:
    return store.home.state / "metrics.json"


def percentile(sorted_values: list[float], share: float) -> float | None:
    """Nearest rank: the smallest value at or above `share` of them."""
    if not sorted_values:
        return None
    rank = max(0, math.ceil(share * len(sorted_values)) - 1)
    return round(sorted_values[rank], 4)


def bucket(seconds: float) -> int:
    return max(0, math.ceil(math.log(max(seconds * 1000, 1.0), HISTOGRAM_STEP)))


def bucket_seconds(index: int) -> float:
    """A bucket's upper bound."""
    return round(HISTOGRAM_STEP**index / 1000, 4)


class _Figures:
    """Tasks, errors, response times, usage and cost of one agent process or a run."""

    def __init__(self) -> None:
        self.tasks = 0
        self.errors = 0
        self.times: list[float] = []
        self.tokens = 0
        self.cache_write = 0
        self.cost = 0.0
        self.unpriced = 0
        self.cpu_s = 0.0
        self.rss_peak: int | None = None

    def add(self, seconds: float | None, ok: bool, tokens: int, cost: float | None) -> None:
        self.tasks += 1
        self.errors += 0 if ok else 1
        if seconds is not None:
            self.times.append(seconds)
        self.tokens += tokens
        if cost is None:
            self.unpriced += 1 if tokens else 0
        else:
            self.cost += cost

    def json(self) -> dict[str, Any]:
        times = sorted(self.times)
        return {
            "tasks": self.tasks,
            "errors": self.errors,
            "p50_response_s": percentile(times, 0.5),
            "p95_response_s": percentile(times, 0.95),
            "tokens": self.tokens,
            "cost_usd": round(self.cost, 6),
            "unpriced": self.unpriced,
            "cpu_s": round(self.cpu_s, 2),
            "rss_peak": self.rss_peak,
        }


class RunMetrics:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.store = run.coordinator.store
        # (agent id, pid) -> (CPU seconds, peak RSS): the last sample of each process.
        self.samples: dict[tuple[str, int], tuple[float, int]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._written_at: tuple[int, int] = (-1, -1)

    # -- gathering -------------------------------------------------------------------

    def sample(self) -> None:
        """CPU seconds and RSS of each live agent process (before they stop)."""
        executor = self.run.executor
        if executor is None:
            return
        from aiswitch.state.processes import process_usage

        for handle in executor.handles():
            pid = handle.pid
            if pid is None:
                continue
            usage = process_usage(pid)
            if usage is None:
                continue
            cpu, rss = usage
            before = self.samples.get((handle.agent_id, pid), (0.0, 0))
            self.samples[(handle.agent_id, pid)] = (cpu, max(rss, before[1]))

    def entry(self) -> dict[str, Any]:
        """This run's entry of `state/metrics.json`, as things stand."""
        run = self.run
        result = run.result
        agents: dict[str, _Figures] = {}
        meta: dict[str, dict[str, Any]] = {}
        for task in run.tasks:
            for attempt in task.attempts:
                process = attempt.process
                if process is None or not attempt.ended:
                    continue  # not on a process yet, or not ended
                figures = agents.get(process)
                if figures is None:
                    figures = agents[process] = _Figures()
                    meta[process] = {"agent": task.result.agent, "preset": task.result.preset}
                figures.add(
                    attempt.ended - attempt.started,
                    attempt.end == "ok",
                    attempt.usage.total_tokens,
                    attempt.cost_usd,
                )
        whole = _Figures()
        cost = 0.0
        unpriced = 0
        for r in result.results:
            if r.attempts and r.final:  # the tasks that ran and ended
                whole.add(r.duration_s, r.status == "ok", 0, None)
            if r.cost_usd is not None:
                cost += r.cost_usd
            elif r.usage.total_tokens:
                unpriced += 1
        whole.tokens = result.usage.total_tokens if result.ended_at else run.spent_tokens
        whole.cost = cost
        whole.unpriced = unpriced
        for (agent_id, _pid), (cpu, rss) in self.samples.items():
            for figures in (agents.setdefault(agent_id, _Figures()), whole):
                figures.cpu_s += cpu
                figures.rss_peak = max(figures.rss_peak or 0, rss)
        reported = self._reported()
        out_agents = {}
        for agent_id, figures in sorted(agents.items()):
            out_agents[agent_id] = {**meta.get(agent_id, {}), **figures.json()}
            if agent_id in reported:
                out_agents[agent_id]["reported"] = reported[agent_id]
        f = result.figures
        histogram: dict[str, int] = {}
        for seconds in whole.times:
            key = str(bucket(seconds))
            histogram[key] = histogram.get(key, 0) + 1
        return {
            "run_id": result.run_id,
            "mode": result.mode,
            "status": str(result.status),
            "started_at": result.started_at.isoformat(),
            "ended_at": result.ended_at.isoformat() if result.ended_at else None,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "run": {
                **whole.json(),
                "operations": f.operations,
                "succeeded": f.succeeded,
                "success_rate": f.success_rate,
                "avg_response_s": f.avg_response_s,
                "peak_concurrency": f.peak_concurrency,
                "operations_per_s": f.operations_per_s,
                "duration_s": _duration(result),
                "response_histogram": histogram,
            },
            "agents": out_agents,
        }

    def _reported(self) -> dict[str, dict[str, Any]]:
        """Each agent process's `metrics.report`s, summed over the processes it ran."""
        executor = self.run.executor
        out: dict[str, dict[str, Any]] = {}
        for handle in executor.handles() if executor is not None else []:
            for metrics in handle.reported.values():
                sums = out.setdefault(handle.agent_id, {})
                for name, value in metrics.model_dump(mode="json").items():
                    if isinstance(value, dict):
                        inner = sums.setdefault(name, {})
                        for key, number in value.items():
                            inner[key] = inner.get(key, 0) + number
                    else:
                        sums[name] = round(sums.get(name, 0) + value, 3)
        return out

    # -- writing ---------------------------------------------------------------------

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._tick)

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self._tick)
        changed = (self.run.finals, self.run.spent_tokens)
        if changed == self._written_at or (self._writing and not self._writing.done()):
            return
        self._written_at = changed
        self.sample()
        entry = self.entry()
        self._writing = asyncio.ensure_future(asyncio.to_thread(self._write, entry))
        self._writing.add_done_callback(_quiet)

    async def close(self) -> None:
        """Write the final entry (the run's figures are set by now)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        entry = self.entry()
        try:
            await asyncio.to_thread(self._write, entry)
        except StateError as exc:
            self.store.warn(f"{exc.one_line()}; this run's metrics are not recorded")

    def _write(self, entry: dict[str, Any]) -> None:
        def change(data: Any) -> dict[str, Any]:
            found = data.get("runs") if isinstance(data, dict) else None
            runs: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
            runs[entry["run_id"]] = entry
            if len(runs) > MAX_RUNS:
                by_start = sorted(runs, key=lambda r: str(runs[r].get("started_at")))
                runs = {r: runs[r] for r in by_start[-MAX_RUNS:]}
            return {"version": VERSION, "runs": runs}

        # Compact: the file may hold hundreds of runs, rewritten at each run's end.
        self.store.update_json(RESOURCE, metrics_path(self.store), dict, change, compact=True)


def _quiet(task: asyncio.Future[None]) -> None:
    """A batch that could not be written (a full disk) waits for the next; `close` says so."""
    if not task.cancelled():
        task.exception()


def _duration(result: Any) -> float | None:
    end = result.ended_at
    return round((end - result.started_at).total_seconds(), 3) if end else None


# -- reading -----------------------------------------------------------------------


def read(store: StateStore) -> list[dict[str, Any]]:
    """The runs' entries, newest first."""
    path = metrics_path(store)
    data: Any = store.read_json(path, {"runs": {}}, strict=True)
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, dict) or not all(isinstance(e, dict) for e in runs.values()):
        raise StateError(
            f"{path} is not a metrics file (no runs object)",
            hint="move it aside; the next run writes a new one",
        )
    return sorted(runs.values(), key=lambda e: str(e.get("started_at")), reverse=True)


def report(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures `aiswitch metrics` prints, over `entries` (one run's is exact)."""
    ops = ok = peak = 0
    busy = 0.0
    histogram: dict[int, int] = {}
    for entry in entries:
        run = entry.get("run") or {}
        count = int(run.get("operations") or 0)
        ops += count
        ok += int(run.get("succeeded") or 0)
        peak = max(peak, int(run.get("peak_concurrency") or 0))
        busy += float(run.get("duration_s") or 0.0)
        for key, n in (run.get("response_histogram") or {}).items():
            histogram[int(key)] = histogram.get(int(key), 0) + int(n)
    samples = sum(histogram.values())
    total_time = sum(
        float((e.get("run") or {}).get("avg_response_s") or 0.0)
        * sum((e.get("run") or {}).get("response_histogram", {}).values())
        for e in entries
    )
    p95 = _histogram_percentile(histogram, 0.95)
    avg = round(total_time / samples, 4) if samples else None
    per_s = round(ops / busy, 2) if busy > 0 else None
    if len(entries) == 1:  # one run's own figures, exact
        run = entries[0].get("run") or {}
        p95, avg, per_s = (
            run.get("p95_response_s"),
            run.get("avg_response_s"),
            run.get("operations_per_s"),
        )
    return {
        "runs": len(entries),
        "operations": ops,
        "succeeded": ok,
        "success_rate": round(ok / ops, 4) if ops else None,
        "avg_response_s": avg,
        "p95_response_s": p95,
        "peak_concurrency": peak,
        "operations_per_s": per_s,
        "tokens": sum(int((e.get("run") or {}).get("tokens") or 0) for e in entries),
        "cost_usd": round(
            sum(float((e.get("run") or {}).get("cost_usd") or 0) for e in entries), 6
        ),
        "unpriced": sum(int((e.get("run") or {}).get("unpriced") or 0) for e in entries),
    }


def _histogram_percentile(histogram: dict[int, int], share: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bucket_seconds(index)
    return None


def task_figures(
    results: Sequence[AgentResult], durations: list[float], elapsed: float
) -> RunFigures:
    """A run's figures from its tasks: operations (tasks that had an attempt), successes,
    the success rate, average and p95 response time, operations per second."""
    from aiswitch.coordinator.results import RunFigures, TaskStatus

    figures = RunFigures()
    figures.operations = sum(1 for r in results if r.attempts)
    figures.succeeded = sum(1 for r in results if r.status == TaskStatus.OK)
    if figures.operations:
        figures.success_rate = round(figures.succeeded / figures.operations, 4)
    ordered = sorted(durations)
    if ordered:
        figures.avg_response_s = round(sum(ordered) / len(ordered), 4)
        # Nearest rank: the smallest duration at or above 95 % of them.
        rank = max(0, math.ceil(0.95 * len(ordered)) - 1)
        figures.p95_response_s = round(ordered[rank], 4)
    if elapsed > 0 and figures.operations:
        figures.operations_per_s = round(figures.operations / elapsed, 2)
    return figures
