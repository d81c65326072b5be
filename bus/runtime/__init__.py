"""The consumer runtime: a stage plugged into Redis Streams.

One :class:`Worker` runs one stage.  Per-session order with horizontal scale:
each input stream (a session, or a session and language) is owned by one
worker at a time through an expiring lease; many streams spread over many
workers, each taking about its fair share.  Inside a worker:

* the *discovery* loop reads the registry (and wakes on announcements),
  acquires leases on unowned streams up to the fair share, sheds extras, and
  ends sessions whose capture agent went silent (``worker.py``, deciding with
  ``planner.py``);
* the *heartbeat* loop renews leases; a lease it cannot renew is dropped at
  once (another worker may have it); it also publishes the stage's health
  record (``Stage.health``) when it changes (``leases.py``);
* *fetch* loops read all owned streams with one XREADGROUP per hash slot and
  queue entries per stream (``reading.py``);
* one task per owned stream hands its entries, in order, to the stage
  (``partition.py``, with the per-entry rules of ``handler.py``);
* the *committer* gathers what the streams produced and writes it with one
  script call per room: lease check (fencing), outputs (deduplicated by
  session, stage, seq, part), input watermark and XACK, all atomic
  (``committer.py``, the calls built by ``commit_ops.py``).

What a worker holds is recorded in ``ownership.py``.  On acquiring a stream the
worker claims the pending entries left by the previous owner (XAUTOCLAIM) and
handles them first.  An entry that keeps failing (``max_attempts``, counting
deliveries to workers that died on it) or that does not decode goes to the
room's dead-letter stream and is acked.
"""

from bus.runtime.handler import RetryPolicy, dead_letter_for, decode_entry, handle_entry, oversized
from bus.runtime.ownership import OwnershipState
from bus.runtime.worker import Worker

__all__ = ["OwnershipState", "RetryPolicy", "Worker", "dead_letter_for", "decode_entry",
           "handle_entry", "oversized"]
