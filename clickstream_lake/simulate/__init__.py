"""The traffic simulator: believable, deterministic clickstream traffic for N sites.

```python
from clickstream_lake.simulate import SimConfig, generate, ground_truth, send
events = list(generate(SimConfig(sites=3, days=2, seed=7)))
truth = ground_truth(events)
report = send(events, "http://127.0.0.1:8787", batch=20, concurrency=8)
```

See docs/simulator.md for what it produces and the JSON-lines format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clickstream_lake.simulate.generator import generate, timeline
from clickstream_lake.simulate.model import SimConfig, SimEvent, parse_end
from clickstream_lake.simulate.truth import ground_truth

if TYPE_CHECKING:
    from clickstream_lake.simulate.sender import SendReport

__all__ = ["SendReport", "SimConfig", "SimEvent", "generate", "ground_truth", "parse_end", "send", "timeline"]


def send(*args: Any, **kwargs: Any) -> SendReport:
    """Send simulated events to a running worker (see :func:`clickstream_lake.simulate.sender.send`)."""
    from clickstream_lake.simulate.sender import send as _send

    return _send(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "SendReport":
        from clickstream_lake.simulate.sender import SendReport

        return SendReport
    raise AttributeError(name)
