"""The jitter buffer's ordering, de-duplication and deadline rules (pure, no clock)."""

from __future__ import annotations

import pytest

from player_agent.jitter import JitterBuffer, Piece


def piece(session: str, seq: int, part: int, last: bool, arrived: float,
          capture: float | None = None) -> Piece:
    t = float(seq) if capture is None else capture
    return Piece(session, seq, part, last, t, t + 1.0, arrived)


def drain(buf: JitterBuffer, now: float) -> list[tuple[str, int, int]]:
    out = []
    while (p := buf.pop(now)) is not None:
        out.append((p.session, p.seq, p.part))
    return out


def test_out_of_order_and_duplicates_are_played_once_in_order() -> None:
    buf = JitterBuffer(hold_s=0.1, deadline_s=1.0)
    arrivals = [(0, 1, False), (0, 0, False), (0, 1, False), (0, 2, True), (0, 0, False),
                (3, 1, True), (3, 0, False), (3, 0, False)]
    for i, (seq, part, last) in enumerate(arrivals):
        buf.push(piece("a", seq, part, last, arrived=0.01 * i))
    assert drain(buf, now=0.2) == [("a", 0, 0), ("a", 0, 1), ("a", 0, 2), ("a", 3, 0), ("a", 3, 1)]
    assert buf.stats.duplicates == 3
    # redelivered after playing: still never twice
    assert buf.push(piece("a", 0, 1, False, arrived=0.3)) == "duplicate"
    assert drain(buf, now=0.4) == []
    assert buf.stats.released == 5 and buf.stats.missing == 0


def test_a_late_piece_within_the_deadline_is_played_in_its_place() -> None:
    buf = JitterBuffer(hold_s=0.0, deadline_s=1.0)
    buf.push(piece("a", 0, 0, False, arrived=0.0))
    assert drain(buf, 0.0) == [("a", 0, 0)]
    buf.push(piece("a", 0, 2, True, arrived=0.1))  # part 1 is late
    assert drain(buf, 0.5) == []
    buf.push(piece("a", 0, 1, False, arrived=0.6))
    assert drain(buf, 0.6) == [("a", 0, 1), ("a", 0, 2)]
    assert buf.stats.missing == 0


def test_a_missing_piece_is_skipped_after_the_deadline_and_counted() -> None:
    buf = JitterBuffer(hold_s=0.0, deadline_s=1.0)
    buf.push(piece("a", 0, 0, False, arrived=0.0))
    buf.push(piece("a", 0, 3, True, arrived=0.2))  # parts 1 and 2 never come
    assert drain(buf, 0.2) == [("a", 0, 0)]
    assert drain(buf, 1.19) == []
    assert buf.next_wakeup(1.19) == pytest.approx(1.2)
    assert drain(buf, 1.2) == [("a", 0, 3)]
    assert buf.stats.missing == 2 and buf.stats.gaps_skipped == 1
    # a skipped piece that shows up afterwards is late, not played out of order
    assert buf.push(piece("a", 0, 1, False, arrived=1.5)) == "late"
    assert drain(buf, 2.0) == []


def test_a_missing_segment_start_and_tail_are_counted() -> None:
    buf = JitterBuffer(hold_s=0.0, deadline_s=0.5)
    buf.push(piece("a", 4, 0, False, arrived=0.0))
    assert drain(buf, 0.0) == [("a", 4, 0)]
    buf.push(piece("a", 6, 2, True, arrived=0.1))  # 4's tail and 6's parts 0, 1 lost
    assert drain(buf, 0.59) == []
    assert drain(buf, 0.6) == [("a", 6, 2)]
    assert buf.stats.missing == 3


def test_no_waiting_after_the_end_marker() -> None:
    buf = JitterBuffer(hold_s=0.0, deadline_s=5.0)
    buf.push(piece("a", 0, 0, False, arrived=0.0))
    buf.push(piece("a", 0, 2, True, arrived=0.0))
    assert drain(buf, 0.0) == [("a", 0, 0)]
    buf.end_session("a")
    assert drain(buf, 0.01) == [("a", 0, 2)]
    assert buf.idle() and buf.sessions_ended()


def test_stalled_segment_does_not_block_other_speakers_forever() -> None:
    buf = JitterBuffer(hold_s=0.1, deadline_s=1.0)
    buf.push(piece("a", 0, 0, False, arrived=0.0, capture=10.0))
    assert drain(buf, 0.1) == [("a", 0, 0)]
    buf.push(piece("b", 0, 0, True, arrived=0.2, capture=11.0))
    assert drain(buf, 0.5) == []  # a's segment is still being spoken
    assert drain(buf, 1.5) == [("b", 0, 0)]


def test_speakers_do_not_overlap_and_go_in_capture_order() -> None:
    buf = JitterBuffer(hold_s=0.2, deadline_s=1.0)
    # b spoke first (capture 5) but its pieces arrive a little after a's (capture 9)
    buf.push(piece("a", 0, 0, False, arrived=0.00, capture=9.0))
    buf.push(piece("b", 0, 0, False, arrived=0.05, capture=5.0))
    buf.push(piece("a", 0, 1, True, arrived=0.06, capture=9.0))
    buf.push(piece("b", 0, 1, True, arrived=0.07, capture=5.0))
    assert drain(buf, 0.1) == []  # held: an earlier speaker may still come
    got = drain(buf, 0.3)
    assert got == [("b", 0, 0), ("b", 0, 1), ("a", 0, 0), ("a", 0, 1)]


def test_segments_are_not_interleaved_between_speakers() -> None:
    buf = JitterBuffer(hold_s=0.0, deadline_s=1.0)
    buf.push(piece("a", 0, 0, False, arrived=0.0, capture=1.0))
    assert drain(buf, 0.0) == [("a", 0, 0)]
    buf.push(piece("b", 0, 0, True, arrived=0.1, capture=0.5))  # earlier, but a is mid-segment
    buf.push(piece("a", 0, 1, True, arrived=0.2, capture=1.0))
    assert drain(buf, 0.2) == [("a", 0, 1), ("b", 0, 0)]


def test_late_joiner_starts_mid_segment_and_continues() -> None:
    buf = JitterBuffer(hold_s=0.1, deadline_s=1.0)
    buf.push(piece("a", 7, 2, False, arrived=0.0))
    buf.push(piece("a", 7, 3, True, arrived=0.01))
    buf.push(piece("a", 8, 0, True, arrived=0.02))
    assert drain(buf, 0.05) == []
    assert drain(buf, 0.1) == [("a", 7, 2), ("a", 7, 3), ("a", 8, 0)]
    assert buf.stats.missing == 0


@pytest.mark.parametrize(("hold", "deadline"), [(-0.1, 1.0), (0.1, 0.0), (2.0, 1.0)])
def test_bad_settings_are_refused(hold: float, deadline: float) -> None:
    with pytest.raises(ValueError, match="hold_s"):
        JitterBuffer(hold_s=hold, deadline_s=deadline)


def test_an_earlier_speaker_arriving_within_the_hold_goes_first() -> None:
    buf = JitterBuffer(hold_s=0.2, deadline_s=1.0)
    buf.push(piece("late-speaker", 0, 0, True, arrived=0.0, capture=9.0))
    buf.push(piece("early-speaker", 0, 0, True, arrived=0.125, capture=5.0))
    assert drain(buf, 0.2) == []  # the first is ready, but the earlier speech is still held
    assert buf.next_wakeup(0.2) == pytest.approx(0.325)
    assert drain(buf, 0.325) == [("early-speaker", 0, 0), ("late-speaker", 0, 0)]
