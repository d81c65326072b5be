from bus.runtime.worker import Worker, dead_letter_for, decode_entry, oversized

__all__ = ["Worker", "dead_letter_for", "decode_entry", "oversized"]
