"""Deployment metrics: psutil samples of a backing process and the reference's JSON shape.

CPU (percent of one core) and memory (MB, resident) are measured on the backing process and its
children; disk totals come from their I/O counters. Network counters are host-wide, because a
local process has no network namespace of its own: they show traffic while the deployment ran,
not traffic of the game alone. Simulated deployments report a single zero sample.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psutil

from sidecar.emulator.store import utcnow

_MAX_SAMPLES = 3600
_MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    at: datetime
    cpu_percent: float
    memory_mb: float
    received_bytes: int  # cumulative since the deployment started
    transmitted_bytes: int
    disk_read_bytes: int
    disk_write_bytes: int


class ProcessSampler:
    """Keeps a bounded history of samples for one deployment, across process restarts."""

    def __init__(self) -> None:
        self.samples: deque[Sample] = deque(maxlen=_MAX_SAMPLES)
        self._processes: dict[int, psutil.Process] = {}
        net = psutil.net_io_counters()
        self._net_baseline = (int(net.bytes_recv), int(net.bytes_sent))

    def sample(self, pid: int | None) -> Sample | None:
        """Measure `pid` and its children now; None when there is nothing to measure."""
        if pid is None:
            return None
        try:
            root = self._process(pid)
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        cpu = memory = read = written = 0.0
        for member in members:
            try:
                process = self._processes.setdefault(member.pid, member)
                # The first cpu_percent() of a process is 0.0 by design: it starts the interval.
                cpu += float(process.cpu_percent(None))
                memory += float(process.memory_info().rss)
                io = process.io_counters()
                read += float(io.read_bytes)
                written += float(io.write_bytes)
            except (psutil.Error, AttributeError):
                continue
        net = psutil.net_io_counters()
        sample = Sample(
            at=utcnow(),
            cpu_percent=round(cpu, 2),
            memory_mb=round(memory / _MB, 2),
            received_bytes=max(0, int(net.bytes_recv) - self._net_baseline[0]),
            transmitted_bytes=max(0, int(net.bytes_sent) - self._net_baseline[1]),
            disk_read_bytes=int(read),
            disk_write_bytes=int(written),
        )
        self.samples.append(sample)
        return sample

    def _process(self, pid: int) -> psutil.Process:
        process = self._processes.get(pid)
        if process is None or not process.is_running():
            process = psutil.Process(pid)
            self._processes[pid] = process
        return process


def _series(samples: list[Sample], start: datetime, values: list[float]) -> dict[str, list[str]]:
    return {
        "labels": [_label(sample.at - start) for sample in samples],
        "datasets": [_number(value) for value in values],
        "timestamps": [sample.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for sample in samples],
    }


def _label(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def select_samples(
    samples: list[Sample], start: datetime, end: datetime, step: timedelta | None
) -> list[Sample]:
    """Samples in [start, end], keeping the last one of each `step` bucket when given."""
    in_range = [sample for sample in samples if start <= sample.at <= end]
    if step is None or step.total_seconds() <= 0:
        return in_range
    buckets: dict[int, Sample] = {}
    for sample in in_range:
        buckets[int((sample.at - start) / step)] = sample
    return [buckets[key] for key in sorted(buckets)]


def metrics_view(samples: list[Sample], deployment_start: datetime) -> dict[str, Any]:
    """The reference's metrics body; network rates are bytes/s between consecutive samples."""
    receive_rate: list[float] = []
    transmit_rate: list[float] = []
    for index, sample in enumerate(samples):
        if index == 0:
            receive_rate.append(0.0)
            transmit_rate.append(0.0)
            continue
        previous = samples[index - 1]
        span = max((sample.at - previous.at).total_seconds(), 1e-6)
        receive_rate.append(
            round(max(0, sample.received_bytes - previous.received_bytes) / span, 2)
        )
        transmit_rate.append(
            round(max(0, sample.transmitted_bytes - previous.transmitted_bytes) / span, 2)
        )

    def series(values: list[float]) -> dict[str, list[str]]:
        return _series(samples, deployment_start, values)

    return {
        "total": {
            "receive_total": series([float(s.received_bytes) for s in samples]),
            "transmit_total": series([float(s.transmitted_bytes) for s in samples]),
            "disk_read_total": series([float(s.disk_read_bytes) for s in samples]),
            "disk_write_total": series([float(s.disk_write_bytes) for s in samples]),
        },
        "cpu": series([s.cpu_percent for s in samples]),
        "mem": series([s.memory_mb for s in samples]),
        "network": {"receive": series(receive_rate), "transmit": series(transmit_rate)},
    }


def zero_sample() -> Sample:
    return Sample(utcnow(), 0.0, 0.0, 0, 0, 0, 0)
