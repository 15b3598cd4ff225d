"""Reading an API's JSON body: the standard library's answer, at msgspec's speed.

Every page of an Outreach listing is a few hundred kilobytes of JSON, so decoding is a fair
share of a sync's CPU; msgspec decodes it about twice as fast as `json`. What it returns must
still be exactly what `json.loads` returned before, for every body:

- an integer of more than 4,300 digits (past Python's `int()` limit for decimal text) stays
  its digits, a `str`: one record's absurd number is that record's problem (translation
  dead-letters it), never an unreadable answer retried until the run ends;
- anything msgspec refuses or reads differently (such integers, floats past the double range,
  `NaN`/`Infinity`, lone surrogate escapes, a UTF-8 byte-order mark, UTF-16/32 bodies) is
  decoded again by `json`, which gives the old answer or the old `ValueError`.

msgspec keeps integers of any length up to that limit exact (orjson turns those past 64 bits
into floats, which is why it is not used here) and refuses the rest, so the two decoders never
disagree on a body both accept (tests/http/test_jsonbody.py holds them to that).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

MAX_INT_DIGITS = 4300  # Python's int() limit for decimal strings (sys.int_info)

_decoder = msgspec.json.Decoder()


def _int_or_digits(text: str) -> int | str:
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else text


def loads(body: bytes | str) -> Any:
    """The decoded body; raises ValueError when it is not JSON."""
    try:
        return _decoder.decode(body)
    except (msgspec.MsgspecError, ValueError):
        return json.loads(body, parse_int=_int_or_digits)
